"""Supervised fine-tuning (and small-scale pretraining) through the same model machinery.

`train_supervised` loads a model with `load_model` (full or LoRA), tokenizes chat rows
with loss on assistant tokens only or packs plain-text rows, and runs AdamW with warmup
and a linear/cosine decay. It reports through the same `Reporter` hooks as the RL
trainer, so the service runs OpenAI `method.type = "supervised"` jobs with it unchanged,
and it checkpoints and resumes through the same `openrft.checkpoint` as the RL trainer.
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
from typing import Any

import torch

from openrft.checkpoint import (
    CHECKPOINTS,
    checkpoint_to_resume,
    prune_checkpoints,
    read_state,
    restore_checkpoint,
    save_checkpoint,
    weights_source,
)
from openrft.errors import InvalidInput
from openrft.eval.evaluate import progress_bar
from openrft.lr_schedule import SCHEDULES, Schedule, lr_scheduler
from openrft.models.load import LoadedModel, LoraSettings, load_model
from openrft.rl.reporter import Reporter
from openrft.sft.examples import (
    TokenizedExample,
    build_examples,
    collate,
    length_bucketed_batches,
)

logger = logging.getLogger(__name__)

RUN_RECORD = "openrft_sft.json"  # base model, settings and summary, next to the final weights
_FREE_ON_RESUME = ("save_every", "keep_checkpoints", "threads")  # every other setting is fixed


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
    keep_checkpoints: int = 3  # the newest ones (SFT has no validation score to rank by)
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
    keep_checkpoints: int = 3,
    threads: int | None = None,
    reporter: Reporter | None = None,
    progress: bool = True,
    resume: bool = False,
) -> Path:
    """Fine-tune on chat or text rows and return `output_dir`, loadable by `load_model`.

    `learning_rate=None` picks 2e-4 for LoRA and 2e-5 for full fine-tuning. With LoRA the
    adapter (plus tokenizer) is saved; otherwise the whole model, as safetensors. Between
    steps `reporter.should_stop()` is honoured: "pause" saves a checkpoint and returns its
    directory, "cancel" stops without saving. `resume=True` continues from the latest
    checkpoint in `output_dir/checkpoints` (or starts fresh when there is none), as the RL
    trainer's `train(resume=True)` does: called with the same model, rows and settings,
    the result matches an uninterrupted run. Without it, a directory holding checkpoints
    is refused.
    """
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
        keep_checkpoints=keep_checkpoints,
        threads=threads,
    )
    _check_settings(settings)
    output_dir = Path(output_dir)
    checkpoint = checkpoint_to_resume(output_dir, resume)
    identity = _run_identity(model, lora, settings)
    if checkpoint is not None:
        _check_unchanged(checkpoint, read_state(checkpoint), identity)
    from transformers import set_seed

    set_seed(settings.seed)  # python, numpy, torch: a new LoRA adapter's init is reproducible
    loaded = _trainable_model(model, lora, checkpoint)
    run = _SFTRun(loaded, rows, settings, output_dir, reporter, identity)
    if checkpoint is not None:
        run.restore(checkpoint)
    return run.train(progress)


def _run_identity(
    model: str | Path | LoadedModel, lora: LoraSettings | None, settings: SFTSettings
) -> dict[str, Any]:
    """What a checkpoint's weights, optimizer state and batch order depend on; saved in
    every checkpoint and compared on resume."""
    return {
        "base_model": model.name if isinstance(model, LoadedModel) else str(model),
        "lora": asdict(lora) if lora is not None else None,
        "settings": asdict(settings),
    }


def _check_unchanged(checkpoint: Path, state: dict[str, Any], identity: dict[str, Any]) -> None:
    """InvalidInput naming the first setting that differs from the checkpoint's run."""
    saved = {"base_model": state.get("base_model"), "lora": state.get("lora"),
             **state.get("settings", {})}
    current = {"base_model": identity["base_model"], "lora": identity["lora"],
               **identity["settings"]}
    for key, value in current.items():
        if key not in _FREE_ON_RESUME and json.loads(json.dumps(value)) != saved.get(key):
            raise InvalidInput(
                f"{checkpoint}: {key}",
                f"the run was started with {saved.get(key)!r}; cannot resume it with {value!r}",
            )


def _check_settings(settings: SFTSettings) -> None:
    for name in ("epochs", "batch_size", "max_length"):
        if getattr(settings, name) < 1:
            raise InvalidInput(name, f"must be >= 1, got {getattr(settings, name)}")
    if not settings.learning_rate > 0:
        raise InvalidInput("learning_rate", f"must be > 0, got {settings.learning_rate}")
    if not 0 <= settings.warmup_ratio <= 1:
        raise InvalidInput("warmup_ratio", f"must be in [0, 1], got {settings.warmup_ratio}")
    if settings.lr_schedule not in SCHEDULES:
        raise InvalidInput("lr_schedule", f"expected one of {', '.join(SCHEDULES)}")
    if settings.save_every is not None and settings.save_every < 1:
        raise InvalidInput("save_every", f"must be >= 1, got {settings.save_every}")
    if settings.keep_checkpoints < 1:
        raise InvalidInput("keep_checkpoints", f"must be >= 1, got {settings.keep_checkpoints}")


def _trainable_model(
    model: str | Path | LoadedModel, lora: LoraSettings | None, checkpoint: Path | None
) -> LoadedModel:
    """The model to train; resuming, the one whose weights `restore_checkpoint` completes."""
    if isinstance(model, LoadedModel):
        if lora is not None:
            raise InvalidInput("lora", "pass a model path to wrap it in a new LoRA adapter")
        if checkpoint is not None and not model.is_adapter:
            raise InvalidInput("model", "resuming a full fine-tune loads the checkpoint's "
                                        "weights: pass the model's path, not a loaded model")
        model.model.train()
        return model
    source = weights_source(str(model), checkpoint, new_adapter=lora is not None)
    return load_model(source, trainable=True, lora=lora)


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
        identity: dict[str, Any],
    ) -> None:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        examples = _load_examples(rows, loaded.tokenizer, settings.max_length, reporter)
        self.loaded, self.model, self.examples = loaded, loaded.model, examples
        self.settings, self.output_dir, self.reporter = settings, output_dir, reporter
        self.identity, self.checkpoints = identity, output_dir / CHECKPOINTS
        # where the run stands: a resumed run takes these from its checkpoint
        self.start_step, self.tokens, self.loss, self.last_saved = 0, 0, math.nan, -1
        self.resumed_from: Path | None = None
        self.rng = random.Random(settings.seed)
        steps_per_epoch = math.ceil(len(examples) / settings.batch_size)
        self.total_steps = steps_per_epoch * settings.epochs
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise InvalidInput("model", "has no trainable parameters: load it with trainable=True")
        self.optimizer = torch.optim.AdamW(
            params, lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        self.scheduler = lr_scheduler(
            self.optimizer, settings.lr_schedule, settings.warmup_ratio, self.total_steps
        )
        self.device = next(self.model.parameters()).device
        self.pad_id = loaded.tokenizer.pad_token_id

    def restore(self, checkpoint: Path) -> None:
        """Continue from `checkpoint`: adapter weights, optimizer, schedule, RNGs, counters."""
        state = restore_checkpoint(checkpoint, self.model, self.optimizer, self.scheduler)
        self.start_step = self.last_saved = int(state["step"])
        self.tokens, self.loss = int(state["tokens"]), float(state["train_loss"])
        self.resumed_from = checkpoint

    def train(self, progress: bool) -> Path:
        self._notify("on_start", self.total_steps, asdict(self.settings))
        if self.resumed_from is not None:
            self._notify("on_event", "info",
                         f"Resumed from {self.resumed_from} at step {self.start_step}",
                         {"resumed_step": self.start_step, "checkpoint": str(self.resumed_from)})
        step, start, start_tokens = 0, time.perf_counter(), self.tokens
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
                    self.loss, n_tokens = self._step([self.examples[i] for i in indices])
                    step, self.tokens = step + 1, self.tokens + n_tokens
                    elapsed = time.perf_counter() - start
                    lr = float(self.scheduler.get_last_lr()[0])
                    rate = (self.tokens - start_tokens) / max(elapsed, 1e-9)
                    self._notify("on_step", _step_metrics(step, epoch, self.loss, lr,
                                                          self.tokens, rate, elapsed))
                    bar.update(task, advance=1, description=f"fine-tuning loss {self.loss:.3f}")
                    if self.settings.save_every and step % self.settings.save_every == 0:
                        self._checkpoint(step)
        summary = {"steps": step, "train_loss": self.loss, "tokens": self.tokens}
        self._save(self.output_dir, summary)
        self._notify("on_checkpoint", step, str(self.output_dir), self._loss_metrics())
        result = {"status": "succeeded", "final_model_dir": str(self.output_dir), "steps": step}
        self._notify("on_end", {**result, "train_loss": self.loss})
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

    def _checkpoint(self, step: int) -> Path:
        """A resumable checkpoint (openrft.checkpoint), then the oldest beyond
        `keep_checkpoints` are deleted."""
        state = {**self.identity, "tokens": self.tokens, "train_loss": self.loss}
        path = save_checkpoint(self.checkpoints, step, self.model, self.loaded.tokenizer,
                               self.optimizer, self.scheduler, state)
        prune_checkpoints(self.checkpoints, self.settings.keep_checkpoints)
        self.last_saved = step
        self._notify("on_checkpoint", step, str(path), self._loss_metrics())
        return path

    def _stop(self, request: str, step: int) -> Path:
        """"pause": checkpoint (unless this step has one) and return it; "cancel": stop
        without saving."""
        if request == "pause":
            path = self.checkpoints / f"step-{step}"
            if self.last_saved != step:
                path = self._checkpoint(step)
            self._notify("on_end", {"status": "paused", "checkpoint": str(path), "steps": step})
            return path
        self._notify("on_end", {"status": "cancelled", "steps": step})
        return self.output_dir

    def _save(self, path: Path, summary: dict[str, Any]) -> None:
        """The final model (or adapter) and tokenizer as safetensors, plus the run record."""
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        self.loaded.tokenizer.save_pretrained(path)
        record = {"base_model": self.identity["base_model"], "settings": asdict(self.settings),
                  **summary}
        (path / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n")

    def _loss_metrics(self) -> dict[str, float]:
        return {} if math.isnan(self.loss) else {"train_loss": self.loss}

    def _notify(self, hook: str, *args: Any) -> None:
        if self.reporter is not None:
            getattr(self.reporter, hook)(*args)


def _step_metrics(
    step: int, epoch: int, loss: float, lr: float, tokens: int, tokens_per_s: float,
    elapsed: float,
) -> dict[str, Any]:
    return {
        "step": step,
        "epoch": epoch,
        "train_loss": loss,
        "learning_rate": lr,
        "tokens": tokens,
        "tokens_per_s": tokens_per_s,
        "elapsed_s": elapsed,
    }
