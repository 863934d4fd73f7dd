"""RunDirReporter: the files a run leaves, truncation on resume, torn lines."""

from __future__ import annotations

import json

import yaml

from openrft.rl.reporter import MultiReporter, NullReporter
from openrft.rl.run_dir import RunDirReporter, read_jsonl_rows


def _row(step: int, valid: float | None = None) -> dict:
    row = {"step": step, "train_reward_mean": 0.1 * step, "train_reward_std": 0.05}
    if valid is not None:
        row["valid_reward_mean"] = valid
    return row


def test_files_and_chart(tmp_path):
    reporter = RunDirReporter(tmp_path / "run")
    reporter.on_start(3, {"seed": 1, "group_size": 4})
    for step in (1, 2, 3):
        reporter.on_step(_row(step, 0.5 if step == 2 else None))
        reporter.on_samples(step, [{"output_text": "x", "score": 1.0}])
    reporter.on_end({"status": "succeeded", "full_valid_mean_reward": 0.7})
    run = tmp_path / "run"
    assert yaml.safe_load((run / "config.yaml").read_text()) == {"seed": 1, "group_size": 4}
    assert [r["step"] for r in read_jsonl_rows(run / "metrics.jsonl")] == [1, 2, 3]
    assert read_jsonl_rows(run / "samples.jsonl")[2] == {"step": 3, "output_text": "x",
                                                         "score": 1.0}
    assert json.loads((run / "result.json").read_text())["full_valid_mean_reward"] == 0.7
    assert (run / "rewards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_truncate_after_drops_redone_steps_and_torn_lines(tmp_path):
    reporter = RunDirReporter(tmp_path)
    for step in (1, 2, 3):
        reporter.on_step(_row(step))
        reporter.on_samples(step, [{"score": 0.0}])
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 4, "train_rew')  # killed mid-write
    reporter.truncate_after(2)
    assert [r["step"] for r in read_jsonl_rows(tmp_path / "metrics.jsonl")] == [1, 2]
    assert [r["step"] for r in read_jsonl_rows(tmp_path / "samples.jsonl")] == [1, 2]


def test_multi_reporter_fans_out_and_first_stop_wins():
    class Stopper(NullReporter):
        def __init__(self, request):
            self.request, self.steps = request, []

        def on_step(self, metrics):
            self.steps.append(metrics["step"])

        def should_stop(self):
            return self.request

    quiet, pausing, cancelling = Stopper(None), Stopper("pause"), Stopper("cancel")
    multi = MultiReporter([quiet, pausing, cancelling])
    multi.on_step({"step": 7})
    assert quiet.steps == pausing.steps == cancelling.steps == [7]
    assert multi.should_stop() == "pause"
    assert MultiReporter([quiet]).should_stop() is None
