"""Supervised fine-tuning (and small-scale pretraining) through the same model machinery.

`train_supervised` loads a model with `load_model` (full or LoRA), tokenizes chat rows
with loss on assistant tokens only or packs plain-text rows, and runs AdamW with warmup
and a linear/cosine decay. It reports through the same `Reporter` hooks as the RL
trainer, so the service runs OpenAI `method.type = "supervised"` jobs with it unchanged.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from openrft.errors import InvalidInput
from openrft.eval.evaluate import progress_bar
from openrft.models.load import LoadedModel, LoraSettings, load_model
from openrft.rl.reporter import Reporter
from openrft.sft.examples import (
    TokenizedExample,
    build_examples,
    collate,
    length_bucketed_batches,
)

logger = logging.getLogger(__name__)

Schedule = Literal["constant", "linear", "cosine"]
RUN_RECORD = "openrft_sft.json"  # base model, settings and summary, next to the weights
TRAINER_STATE = "sft_trainer_state.pt"  # step + optimizer + scheduler, in checkpoints only


@dataclass
class SFTSettings:
    """Everything that shapes a supervised run (saved as openrft_sft.json with the model)."""

    epochs: int = 1
    learning_rate: float = 2e-5  # AdamW peak learning rate (after warmup)
    batch_size: int = 8  # sequences per optimizer step
    max_length: int = 512  # tokens per sequence (chat rows truncated, text packed to this)
    seed: int = 0
    lr_schedule: Schedule = "cosine"
    warmup_ratio: float = 0.03  # fraction of the steps with linear warmup from 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    save_every: int | None = None  # steps between intermediate checkpoints (None: only final)
    threads: int | None = None  # torch intra-op threads (None: torch's default)


def train_supervised(
    model: str | Path | LoadedModel,
    rows: Sequence[dict[str, Any]] | str | Path,
    output_dir: str | Path,
    *,
    epochs: int = 1,
    learning_rate: float | None = None,
    batch_size: int = 8,
    lora: LoraSettings | None = None,
    max_length: int = 512,
    seed: int = 0,
    lr_schedule: Schedule = "cosine",
    warmup_ratio: float = 0.03,
    weight_decay: float = 0.0,
    save_every: int | None = None,
    threads: int | None = None,
    reporter: Reporter | None = None,
    progress: bool = True,
    resume_from: str | Path | None = None,
) -> Path:
    """Fine-tune on chat or text rows and return `output_dir`, loadable by `load_model`.

    `learning_rate=None` picks 2e-4 for LoRA and 2e-5 for full fine-tuning. With LoRA the
    adapter (plus tokenizer) is saved; otherwise the whole model, as safetensors. Between
    steps `reporter.should_stop()` is honoured: "pause" saves a checkpoint and returns its
    directory, "cancel" stops without saving. `resume_from` continues from such a
    checkpoint: its weights, optimizer state, step and settings replace `model` and the
    setting arguments, so the result matches an uninterrupted run.
    """
    if resume_from is not None:
        return _resume(Path(resume_from), rows, Path(output_dir), reporter, progress)
    settings = SFTSettings(
        epochs=epochs,
        learning_rate=learning_rate if learning_rate is not None else (2e-4 if lora else 2e-5),
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        lr_schedule=lr_schedule,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        save_every=save_every,
        threads=threads,
    )
    _check_settings(settings)
    loaded = _trainable_model(model, lora)
    run = _SFTRun(loaded, rows, settings, Path(output_dir), reporter, base_model=loaded.name)
    return run.train(progress)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest resumable checkpoint of a run (`checkpoints/step-N`), or None.

    A service resumes a paused or re-claimed job with
    `train_supervised(..., resume_from=latest_checkpoint(output_dir))`.
    """
    root = Path(output_dir) / "checkpoints"
    found = [p for p in root.glob("step-*") if (p / TRAINER_STATE).is_file()]
    steps = {p: int(p.name.removeprefix("step-")) for p in found if p.name[5:].isdigit()}
    return max(steps, key=steps.__getitem__) if steps else None


def _resume(
    checkpoint: Path, rows: Any, output_dir: Path, reporter: Reporter | None, progress: bool
) -> Path:
    """Continue a paused run from its checkpoint directory."""
    state_path = checkpoint / TRAINER_STATE
    if not state_path.is_file():
        raise InvalidInput(str(checkpoint), f"not an SFT checkpoint: no {TRAINER_STATE}")
    record = json.loads((checkpoint / RUN_RECORD).read_text())
    settings = SFTSettings(**record["settings"])
    loaded = load_model(checkpoint, trainable=True)
    run = _SFTRun(loaded, rows, settings, output_dir, reporter, base_model=record["base_model"])
    state = torch.load(state_path, weights_only=True)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.start_step = int(state["step"])
    return run.train(progress)


def _check_settings(settings: SFTSettings) -> None:
    for name in ("epochs", "batch_size", "max_length"):
        if getattr(settings, name) < 1:
            raise InvalidInput(name, f"must be >= 1, got {getattr(settings, name)}")
    if not settings.learning_rate > 0:
        raise InvalidInput("learning_rate", f"must be > 0, got {settings.learning_rate}")
    if not 0 <= settings.warmup_ratio <= 1:
        raise InvalidInput("warmup_ratio", f"must be in [0, 1], got {settings.warmup_ratio}")
    if settings.lr_schedule not in ("constant", "linear", "cosine"):
        raise InvalidInput("lr_schedule", "expected constant, linear or cosine")
    if settings.save_every is not None and settings.save_every < 1:
        raise InvalidInput("save_every", f"must be >= 1, got {settings.save_every}")


def _trainable_model(model: str | Path | LoadedModel, lora: LoraSettings | None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        if lora is not None:
            raise InvalidInput("lora", "pass a model path to wrap it in a new LoRA adapter")
        model.model.train()
        return model
    return load_model(model, trainable=True, lora=lora)


def _load_examples(
    rows: Sequence[dict[str, Any]] | str | Path,
    tokenizer: Any,
    max_length: int,
    reporter: Reporter | None,
) -> list[TokenizedExample]:
    """Read (a JSONL path) and tokenize rows; InvalidInput names file:line or rows[i]."""
    if isinstance(rows, str | Path):
        from openrft.data.jsonl import read_jsonl_numbered

        numbered = read_jsonl_numbered(rows)
        values = [value for _, value in numbered]
        locations = [f"{rows}:{line}" for line, _ in numbered]
    else:
        values = list(rows)
        locations = [f"rows[{i}]" for i in range(len(values))]
    if not values:
        raise InvalidInput(str(rows) if isinstance(rows, str | Path) else "rows", "no rows")
    examples, skipped = build_examples(tokenizer, values, locations, max_length)
    if skipped:
        message = (
            f"{len(skipped)} chat rows have no assistant token within max_length={max_length} "
            f"and are skipped (first: {skipped[0]})"
        )
        logger.warning(message)
        if reporter is not None:
            reporter.on_event("warn", message, {"skipped_rows": skipped})
    if not examples:
        raise InvalidInput("rows", f"no trainable tokens left within max_length={max_length}")
    return examples


class _SFTRun:
    """One training run's state; `train` reads top to bottom: batch, loss, step, report."""

    def __init__(
        self,
        loaded: LoadedModel,
        rows: Any,
        settings: SFTSettings,
        output_dir: Path,
        reporter: Reporter | None,
        base_model: str,
    ) -> None:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        torch.manual_seed(settings.seed)
        examples = _load_examples(rows, loaded.tokenizer, settings.max_length, reporter)
        self.loaded, self.model, self.examples = loaded, loaded.model, examples
        self.settings, self.output_dir, self.reporter = settings, output_dir, reporter
        self.base_model, self.start_step = base_model, 0
        self.rng = random.Random(settings.seed)
        steps_per_epoch = math.ceil(len(examples) / settings.batch_size)
        self.total_steps = steps_per_epoch * settings.epochs
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise InvalidInput("model", "has no trainable parameters: load it with trainable=True")
        self.optimizer = torch.optim.AdamW(
            params, lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        self.scheduler = _lr_scheduler(self.optimizer, settings, self.total_steps)
        self.device = next(self.model.parameters()).device
        self.pad_id = loaded.tokenizer.pad_token_id

    def train(self, progress: bool) -> Path:
        self._notify("on_start", self.total_steps, asdict(self.settings))
        step, tokens, start, loss = 0, 0, time.perf_counter(), math.nan
        self.model.train()
        with progress_bar(progress) as bar:
            task = bar.add_task("fine-tuning", total=self.total_steps, completed=self.start_step)
            for epoch in range(self.settings.epochs):
                lengths = [len(e.input_ids) for e in self.examples]
                # The batch order is a pure function of the seed, so a resumed run replays
                # it and skips the batches it already trained on.
                for indices in length_bucketed_batches(lengths, self.settings.batch_size, self.rng):
                    if step < self.start_step:
                        step += 1
                        continue
                    stop = self.reporter.should_stop() if self.reporter else None
                    if stop is not None:
                        return self._stop(stop, step)
                    loss, n_tokens = self._step([self.examples[i] for i in indices])
                    step, tokens = step + 1, tokens + n_tokens
                    elapsed = time.perf_counter() - start
                    lr = float(self.scheduler.get_last_lr()[0])
                    self._notify("on_step", _step_metrics(step, epoch, loss, lr, tokens, elapsed))
                    bar.update(task, advance=1, description=f"fine-tuning loss {loss:.3f}")
                    if self.settings.save_every and step % self.settings.save_every == 0:
                        self._checkpoint(step, {"train_loss": loss})
        self._save(self.output_dir, {"steps": step, "train_loss": loss, "tokens": tokens})
        self._notify("on_checkpoint", step, str(self.output_dir), {"train_loss": loss})
        result = {"status": "succeeded", "final_model_dir": str(self.output_dir), "steps": step}
        self._notify("on_end", {**result, "train_loss": loss})
        return self.output_dir

    def _step(self, batch: list[TokenizedExample]) -> tuple[float, int]:
        """Forward, backward, clip, optimizer and scheduler step; (loss, input tokens)."""
        tensors = {k: v.to(self.device) for k, v in collate(batch, self.pad_id).items()}
        loss = self.model(**tensors).loss  # mean over the unmasked label tokens
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), int(tensors["attention_mask"].sum())

    def _checkpoint(self, step: int, metrics: dict[str, Any]) -> Path:
        """A resumable checkpoint: the model plus optimizer and scheduler state."""
        path = self.output_dir / "checkpoints" / f"step-{step}"
        self._save(path, {"steps": step, **metrics})
        state = {
            "step": step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        torch.save(state, path / TRAINER_STATE)
        self._notify("on_checkpoint", step, str(path), metrics)
        return path

    def _stop(self, request: str, step: int) -> Path:
        """"pause": checkpoint and return it; "cancel": stop without saving."""
        if request == "pause":
            path = self._checkpoint(step, {})
            self._notify("on_end", {"status": "paused", "checkpoint": str(path), "steps": step})
            return path
        self._notify("on_end", {"status": "cancelled", "steps": step})
        return self.output_dir

    def _save(self, path: Path, summary: dict[str, Any]) -> None:
        """Model (or adapter) and tokenizer as safetensors, plus the run's settings."""
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        self.loaded.tokenizer.save_pretrained(path)
        record = {"base_model": self.base_model, "settings": asdict(self.settings), **summary}
        (path / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n")

    def _notify(self, hook: str, *args: Any) -> None:
        if self.reporter is not None:
            getattr(self.reporter, hook)(*args)


def _step_metrics(
    step: int, epoch: int, loss: float, lr: float, tokens: int, elapsed: float
) -> dict[str, Any]:
    return {
        "step": step,
        "epoch": epoch,
        "train_loss": loss,
        "learning_rate": lr,
        "tokens": tokens,
        "tokens_per_s": tokens / max(elapsed, 1e-9),
        "elapsed_s": elapsed,
    }


def _lr_scheduler(
    optimizer: torch.optim.Optimizer, settings: SFTSettings, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """transformers' warmup + constant/linear/cosine schedules (decay to 0 at the end)."""
    from transformers import get_scheduler

    name = "constant_with_warmup" if settings.lr_schedule == "constant" else settings.lr_schedule
    warmup = round(settings.warmup_ratio * total_steps)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)

