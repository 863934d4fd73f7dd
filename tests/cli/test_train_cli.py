"""`openrft train` through the real entry point: a run end to end, and bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from cli_runner import openrft

GRADER = {"type": "string_check", "name": "g", "input": "{{ sample.output_text }}",
          "reference": "{{ item.target }}", "operation": "like"}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny-model matmuls gain nothing from threads and lose a lot on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)




def _config(tmp_path: Path, model: Path, grader: dict = GRADER, **expert) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}], "target": "e"} for i in range(4)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "model": str(model),
        "training_file": "train.jsonl",  # relative: found next to the config file
        "grader": grader,
        "seed": 1,
        "output_dir": str(tmp_path / "run"),
        "hyperparameters": {"batch_size": 2, "n_epochs": 1},
        "expert": {"group_size": 2, "max_tokens": 3, **expert},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_prints_where_the_results_are(monkeypatch, capsys, tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir)
    other = tmp_path / "elsewhere"
    code, out, err = openrft(monkeypatch, capsys, "train", config, "--output-dir", other)
    assert code == 0, err
    assert f"Run directory: {other}" in out
    assert f"Final model:   {other / 'final'}" in out
    assert str(other / "rewards.png") in out
    assert len((other / "metrics.jsonl").read_text().splitlines()) == 2  # 4 rows / batch 2
    # The same run again without --resume is refused in one line; with --resume it is done.
    code, out, err = openrft(monkeypatch, capsys, "train", config, "--output-dir", other)
    assert code == 2 and "already holds a run" in err and len(err.strip().splitlines()) == 1
    code, out, err = openrft(monkeypatch, capsys, "train", config, "--output-dir", other,
                             "--resume")
    assert code == 0, err
    assert len((other / "metrics.jsonl").read_text().splitlines()) == 2


def test_bad_config_is_one_line_exit_2(monkeypatch, capsys, tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir, beta=-1)
    code, out, err = openrft(monkeypatch, capsys, "train", config)
    assert code == 2
    assert err.strip() == f"error: {config}: expert.beta: Input should be greater than or " \
                          "equal to 0"
    assert "Traceback" not in err


def test_bad_training_row_is_one_line_exit_2(monkeypatch, capsys, tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir)
    with (tmp_path / "train.jsonl").open("a") as handle:
        handle.write('{"messages": [{"role": "user", "content": "x"}]}\n')  # no "target"
    code, out, err = openrft(monkeypatch, capsys, "train", config)
    assert code == 2
    assert "train.jsonl:5: item.target" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # nothing started


NEVER = {**GRADER, "reference": "zqzqzq"}


def test_train_shows_health_findings_and_a_failed_preflight(monkeypatch, capsys, tmp_path,
                                                            tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir, grader=NEVER, monitor={"patience": 2})
    code, out, err = openrft(monkeypatch, capsys, "train", config)
    assert code == 0, err
    assert "warn: no_signal (since step 1): No learning signal" in out
    assert "Training health: no_signal (step 1)" in out
    config = _config(tmp_path, tiny_model_dir, grader=NEVER, preflight=True)
    code, out, err = openrft(monkeypatch, capsys, "train", config, "--output-dir",
                             tmp_path / "gated")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "error: Preflight verdict: too_hard" in err and "preflight_override" in err
