"""train_supervised on the tiny model: loss falls, answers are memorised, outputs reload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from openrft.checkpoint import latest_checkpoint, read_state
from openrft.errors import InvalidInput
from openrft.models.load import LoraSettings, load_model
from openrft.sft import train_supervised

FACTS = [("alpha", "seven"), ("beta", "three"), ("gamma", "nine"), ("delta", "two")]
ROWS = [
    {
        "messages": [
            {"role": "user", "content": f"Code word {word}?"},
            {"role": "assistant", "content": f"The answer is {answer}."},
        ]
    }
    for word, answer in FACTS
]


class RecordingReporter:
    """A Reporter that remembers every call; `stop_after` makes should_stop fire."""

    def __init__(self, stop_after: int | None = None, request: str = "pause") -> None:
        self.calls: list[tuple[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.stop_after, self.request = stop_after, request

    def on_start(self, total_steps: int, config: dict[str, Any]) -> None:
        self.calls.append(("start", total_steps))

    def on_step(self, metrics: dict[str, Any]) -> None:
        self.steps.append(metrics)

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.calls.append(("event", message))

    def on_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        self.calls.append(("samples", step))

    def on_checkpoint(self, step: int, path: str, metrics: dict[str, Any]) -> None:
        self.calls.append(("checkpoint", (step, path)))

    def on_end(self, result: dict[str, Any]) -> None:
        self.calls.append(("end", result))

    def should_stop(self):
        if self.stop_after is not None and len(self.steps) >= self.stop_after:
            return self.request
        return None


def greedy_answer(model_dir: Path, question: str) -> str:
    """Greedy decode with transformers' own generate (an oracle independent of our engine)."""
    loaded = load_model(model_dir)
    tokenizer = loaded.tokenizer
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    inputs = {k: v.to(loaded.device) for k, v in inputs.items()}
    out = loaded.model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.fixture(scope="module")
def memorised(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    reporter = RecordingReporter()
    out = train_supervised(
        tiny_model_dir,
        ROWS,
        tmp_path_factory.mktemp("sft") / "model",
        epochs=40,
        learning_rate=5e-3,
        batch_size=4,
        warmup_ratio=0.0,
        lr_schedule="constant",
        seed=0,
        reporter=reporter,
        progress=False,
    )
    return out, reporter


def test_loss_falls_on_a_memorisation_set(memorised) -> None:
    _, reporter = memorised
    losses = [m["train_loss"] for m in reporter.steps]
    assert len(losses) == 40  # 4 rows, batch 4, 40 epochs
    assert losses[-1] < 0.5 * losses[0]
    assert sum(losses[-5:]) / 5 < 1.0  # near-memorised (ln(514) ≈ 6.2 at random init)


def test_fine_tuned_model_reproduces_memorised_answers(memorised, tiny_model_dir: Path) -> None:
    out, _ = memorised
    for word, answer in FACTS:
        assert greedy_answer(out, f"Code word {word}?") == f"The answer is {answer}."
    assert greedy_answer(tiny_model_dir, "Code word alpha?") != "The answer is seven."


def test_reporter_sees_the_whole_run(memorised) -> None:
    out, reporter = memorised
    assert reporter.calls[0] == ("start", 40)
    assert reporter.calls[-2] == ("checkpoint", (40, str(out)))
    end = reporter.calls[-1][1]
    assert end["status"] == "succeeded" and end["final_model_dir"] == str(out)
    assert [m["step"] for m in reporter.steps] == list(range(1, 41))
    assert all(m["tokens"] > 0 for m in reporter.steps)
    assert [m["learning_rate"] for m in reporter.steps] == pytest.approx([5e-3] * 40)


def test_output_is_a_safetensors_model_dir(memorised) -> None:
    out, _ = memorised
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    record = json.loads((out / "openrft_sft.json").read_text())
    assert record["steps"] == 40 and record["settings"]["learning_rate"] == 5e-3


def test_lora_run_saves_an_adapter_that_load_model_reads(tiny_model_dir: Path, tmp_path: Path):
    out = train_supervised(
        tiny_model_dir,
        ROWS[:2],
        tmp_path / "adapter",
        epochs=3,
        batch_size=2,
        learning_rate=1e-2,
        lora=LoraSettings(rank=4, alpha=8),
        progress=False,
    )
    assert (out / "adapter_config.json").is_file()
    assert not (out / "model.safetensors").exists()
    assert load_model(out).is_adapter


def test_text_rows_train_a_causal_lm(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [{"text": "zebra quartz " * 6} for _ in range(8)]
    reporter = RecordingReporter()
    train_supervised(
        tiny_model_dir, rows, tmp_path / "lm", epochs=6, batch_size=4, max_length=32,
        learning_rate=5e-3, warmup_ratio=0.0, reporter=reporter, progress=False,
    )
    losses = [m["train_loss"] for m in reporter.steps]
    assert losses[-1] < 0.5 * losses[0]


def test_pause_saves_a_checkpoint_and_cancel_saves_nothing(tiny_model_dir: Path, tmp_path: Path):
    paused = RecordingReporter(stop_after=2, request="pause")
    path = train_supervised(
        tiny_model_dir, ROWS, tmp_path / "p", epochs=5, batch_size=2, reporter=paused,
        progress=False,
    )
    assert path == tmp_path / "p" / "checkpoints" / "step-2"
    assert load_model(path).model is not None
    assert paused.calls[-1][1]["status"] == "paused"

    cancelled = RecordingReporter(stop_after=1, request="cancel")
    train_supervised(
        tiny_model_dir, ROWS, tmp_path / "c", epochs=5, batch_size=2, reporter=cancelled,
        progress=False,
    )
    assert cancelled.calls[-1][1]["status"] == "cancelled"
    assert not (tmp_path / "c" / "model.safetensors").exists()


def test_bad_rows_name_file_and_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps({"messages": "hi"}) + "\n")
    with pytest.raises(InvalidInput, match=r"rows\.jsonl:3: messages"):
        train_supervised(tiny_model_dir, data, tmp_path / "x", progress=False)
    with pytest.raises(InvalidInput, match="batch_size"):
        train_supervised(tiny_model_dir, ROWS, tmp_path / "x", batch_size=0, progress=False)


def _weights(model_dir: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(model_dir / name)


def _curve(steps: list[dict[str, Any]]) -> list[tuple]:
    """The step records without wall-clock fields."""
    return [(m["step"], m["epoch"], m["train_loss"], m["learning_rate"], m["tokens"])
            for m in steps]


def test_pause_then_resume_matches_an_uninterrupted_run(tiny_model_dir: Path, tmp_path: Path):
    settings = dict(epochs=4, batch_size=2, learning_rate=3e-3, seed=1, progress=False)
    straight_reporter = RecordingReporter()
    straight = train_supervised(tiny_model_dir, ROWS, tmp_path / "straight",
                                reporter=straight_reporter, **settings)

    paused = RecordingReporter(stop_after=3, request="pause")  # pauses in epoch 2 of 4
    checkpoint = train_supervised(
        tiny_model_dir, ROWS, tmp_path / "resumed", reporter=paused, **settings
    )
    assert checkpoint == tmp_path / "resumed" / "checkpoints" / "step-3"
    assert latest_checkpoint(tmp_path / "resumed" / "checkpoints") == checkpoint
    assert latest_checkpoint(tmp_path / "straight" / "checkpoints") is None
    resumed_reporter = RecordingReporter()
    final = train_supervised(tiny_model_dir, ROWS, tmp_path / "resumed",
                             reporter=resumed_reporter, resume=True, **settings)
    assert ("event", f"Resumed from {checkpoint} at step 3") in resumed_reporter.calls
    assert _curve(paused.steps + resumed_reporter.steps) == _curve(straight_reporter.steps)
    expected = _weights(straight, "model.safetensors")
    got = _weights(final, "model.safetensors")
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    record = json.loads((final / "openrft_sft.json").read_text())
    assert record["base_model"] == str(tiny_model_dir) and record["steps"] == 8
    assert record["tokens"] == straight_reporter.steps[-1]["tokens"]


class Killed(Exception):
    pass


class KillingReporter(RecordingReporter):
    """Dies (like a SIGKILL, no pause) right after reporting step `at`."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def on_step(self, metrics: dict[str, Any]) -> None:
        super().on_step(metrics)
        if metrics["step"] == self.at:
            raise Killed


def test_a_killed_lora_run_resumes_from_its_last_checkpoint_exactly(tiny_model_dir: Path,
                                                                   tmp_path: Path):
    """LoRA with dropout: the resumed run matches only if the adapter init is seeded and the
    checkpoint restores the torch RNG as well as weights, optimizer and schedule."""
    settings = dict(epochs=4, batch_size=2, learning_rate=1e-2, seed=3, save_every=2,
                    keep_checkpoints=2, lora=LoraSettings(rank=4, alpha=8, dropout=0.3),
                    lr_schedule="cosine", warmup_ratio=0.25, progress=False)
    straight_reporter = RecordingReporter()
    straight = train_supervised(tiny_model_dir, ROWS, tmp_path / "straight",
                                reporter=straight_reporter, **settings)

    killed = KillingReporter(at=7)  # after the checkpoint of step 6, before step 8's
    with pytest.raises(Killed):
        train_supervised(tiny_model_dir, ROWS, tmp_path / "run", reporter=killed, **settings)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-4", "step-6"]  # keep 2
    assert read_state(checkpoints / "step-6")["step"] == 6
    assert load_model(checkpoints / "step-6").is_adapter  # a checkpoint is a model dir too
    with pytest.raises(InvalidInput, match="already holds a run"):  # resume, not restart
        train_supervised(tiny_model_dir, ROWS, tmp_path / "run", **settings)

    resumed = RecordingReporter()
    final = train_supervised(tiny_model_dir, ROWS, tmp_path / "run", reporter=resumed,
                             resume=True, **settings)
    assert [m["step"] for m in resumed.steps] == [7, 8]  # step 7 is trained again
    assert _curve(killed.steps[:6] + resumed.steps) == _curve(straight_reporter.steps)
    expected = _weights(straight, "adapter_model.safetensors")
    got = _weights(final, "adapter_model.safetensors")
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


def test_resume_refuses_settings_the_checkpoint_depends_on(tiny_model_dir: Path,
                                                           tmp_path: Path):
    settings = dict(epochs=3, batch_size=2, seed=1, progress=False)
    train_supervised(tiny_model_dir, ROWS, tmp_path / "r",
                     reporter=RecordingReporter(stop_after=1), **settings)
    with pytest.raises(InvalidInput, match=r"step-1: batch_size"):
        train_supervised(tiny_model_dir, ROWS, tmp_path / "r", resume=True,
                         **{**settings, "batch_size": 4})
    with pytest.raises(InvalidInput, match=r"step-1: lora"):
        train_supervised(tiny_model_dir, ROWS, tmp_path / "r", resume=True,
                         lora=LoraSettings(rank=4), **settings)
    # resume=True with nothing to resume from starts fresh, as the RL trainer does
    out = train_supervised(tiny_model_dir, ROWS, tmp_path / "fresh", resume=True, **settings)
    assert json.loads((out / "openrft_sft.json").read_text())["steps"] == 6


def test_rows_truncated_to_no_answer_are_reported(tiny_model_dir: Path, tmp_path: Path) -> None:
    long_prompt = {"messages": [{"role": "user", "content": "word " * 60},
                                {"role": "assistant", "content": "x"}]}
    reporter = RecordingReporter()
    train_supervised(tiny_model_dir, [ROWS[0], long_prompt], tmp_path / "m", max_length=24,
                     reporter=reporter, progress=False)
    events = [message for kind, message in reporter.calls if kind == "event"]
    assert events == ["1 chat rows have no assistant token within max_length=24 and are "
                      "skipped (first: rows[1])"]
    assert len(reporter.steps) == 1  # one example left, one batch
