"""Checkpoints of every trainer (RL and SFT): one format, one resume path, atomic writes.

`<output_dir>/checkpoints/step-N/` holds the model (a peft adapter or a full HF model,
plus the tokenizer, loadable by `load_model` and `openrft eval`) and
`trainer_state.json` + `trainer_state.safetensors` (step, the trainer's own JSON state,
optimizer and LR-scheduler state, RNG states). A checkpoint is written into a temporary
sibling directory and renamed into place, so `step-N/` either exists complete or not at
all, whenever the process dies; `latest_checkpoint` never sees a half-written one.

A run resumes in three moves, the same for both trainers: `checkpoint_to_resume` finds
the checkpoint, the model is loaded from `weights_source(...)` and the optimizer and
schedule are built exactly as for a fresh run, then `restore_checkpoint` puts back the
adapter weights, optimizer, schedule and RNG states and returns the trainer's state.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from openrft.errors import InvalidInput
from openrft.rollout.engine import CausalLM

CHECKPOINTS = "checkpoints"  # the folder of a run directory that holds them
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def save_model_dir(path: Path, model: CausalLM, tokenizer: Any) -> None:
    """Write model (adapter or full) + tokenizer to `path` atomically (tmp dir + rename)."""
    tmp = path.with_name(f".tmp-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    _save_pretrained(model, tmp)
    tokenizer.save_pretrained(tmp)
    _replace_dir(tmp, path)


def save_checkpoint(
    checkpoints_dir: Path,
    step: int,
    model: CausalLM,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
) -> Path:
    """Write `checkpoints_dir/step-<step>/` atomically and return its path.

    `state` holds plain JSON values the trainer wants back (seed, epoch, settings, ...);
    a `valid_reward_mean` in it is what `prune_checkpoints` ranks by. A write that fails
    or is killed midway leaves only a `.tmp-step-N` folder, which nothing reads and the
    next write removes.
    """
    path = checkpoints_dir / f"step-{step}"
    tmp = checkpoints_dir / f".tmp-step-{step}"
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    for leftover in checkpoints_dir.glob(".tmp-step-*"):  # one writer per run directory
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        _save_pretrained(model, tmp)
        tokenizer.save_pretrained(tmp)
        tensors, meta = _optimizer_to_flat(optimizer.state_dict())
        rng_tensors, rng_meta = _capture_rng()
        tensors.update(rng_tensors)
        save_file(tensors, str(tmp / STATE_TENSORS))
        document = {
            **state,
            "step": step,
            "optimizer": meta,
            "scheduler": scheduler.state_dict(),
            "rng": rng_meta,
        }
        (tmp / STATE_JSON).write_text(json.dumps(document, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace_dir(tmp, path)
    return path


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None (tmp dirs are ignored)."""
    steps = checkpoint_steps(checkpoints_dir)
    return checkpoints_dir / f"step-{steps[-1]}" if steps else None


def checkpoint_to_resume(output_dir: Path, resume: bool, started: bool = False) -> Path | None:
    """The checkpoint a run in `output_dir` continues from: with `resume` the latest one
    (None: start fresh). Without `resume`, InvalidInput when `output_dir` already holds a
    run (a checkpoint, or `started`): a fresh run would mix its checkpoints with those."""
    checkpoint = latest_checkpoint(output_dir / CHECKPOINTS)
    if resume:
        return checkpoint
    if checkpoint is not None or started:
        raise InvalidInput(
            str(output_dir),
            "already holds a run; resume it (--resume, resume=True) or choose another "
            "output_dir",
        )
    return None


def prune_checkpoints(checkpoints_dir: Path, keep: int, keep_newest: bool = True) -> None:
    """Keep the `keep` checkpoints with the highest validation reward, as OpenAI keeps
    the 3 with the highest `valid_reward_mean`; delete the others.

    A checkpoint without a score (no validation at its step) ranks below every scored
    one, ties go to the newer step, so a run without a validation file keeps its newest.
    With `keep_newest` (while training) the newest checkpoint is kept too, whatever its
    score: a stopped run resumes from it.
    """
    steps = checkpoint_steps(checkpoints_dir)
    scores = {step: checkpoint_score(checkpoints_dir / f"step-{step}") for step in steps}
    ranked = sorted(steps, key=lambda s: (scores[s] is not None, scores[s] or 0.0, s),
                    reverse=True)
    kept = set(ranked[:keep]) | ({steps[-1]} if keep_newest and steps else set())
    for step in steps:
        if step not in kept:
            shutil.rmtree(checkpoints_dir / f"step-{step}", ignore_errors=True)


def checkpoint_score(path: Path) -> float | None:
    """The `valid_reward_mean` measured at a checkpoint's step, if validation ran then."""
    try:
        value = read_state(path).get("valid_reward_mean")
    except (OSError, ValueError):
        return None
    return float(value) if isinstance(value, int | float) else None


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's trainer state as saved (step and the trainer's own values), without
    loading any tensor."""
    return json.loads((path / STATE_JSON).read_text())


def weights_source(base: str, checkpoint: Path | None, new_adapter: bool) -> str:
    """What a (resumed) run loads its model from. A run that wraps the base model in a new
    LoRA adapter loads the base model, and `restore_checkpoint` then sets the adapter's
    weights; any other run loads the checkpoint's own weights."""
    return str(checkpoint) if checkpoint is not None and not new_adapter else base


def restore_checkpoint(
    path: Path, model: CausalLM, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Resume from `path` into a model loaded from `weights_source(...)` and an optimizer
    and schedule built as for a fresh run: the adapter weights (a peft model), optimizer,
    scheduler and RNG states. Returns the trainer state (`read_state`)."""
    if not (path / STATE_JSON).is_file():
        raise InvalidInput(str(path), f"not a checkpoint: no {STATE_JSON}")
    if hasattr(model, "peft_config"):
        _load_adapter_weights(model, path)
    document = read_state(path)
    tensors = load_file(str(path / STATE_TENSORS))
    optimizer.load_state_dict(_optimizer_from_flat(tensors, document["optimizer"]))
    scheduler.load_state_dict(document["scheduler"])
    _restore_rng(tensors, document["rng"])
    return document


def export_model(checkpoint: Path, out: Path) -> Path:
    """Copy a checkpoint's model (weights, tokenizer) to `out`, replacing it, without the
    trainer state: a model directory like a run's final one."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(checkpoint, out, ignore=shutil.ignore_patterns(STATE_JSON, STATE_TENSORS))
    return out


def checkpoint_steps(checkpoints_dir: Path) -> list[int]:
    """Steps of the complete `step-N/` checkpoints, ascending (tmp dirs are ignored)."""
    if not checkpoints_dir.is_dir():
        return []
    matches = (_STEP_DIR.match(p.name) for p in checkpoints_dir.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in matches if m)


def _replace_dir(tmp: Path, path: Path) -> None:
    """Rename `tmp` to `path`; an older `path` is moved aside first, then deleted."""
    _fsync_tree(tmp)
    if path.exists():
        old = path.with_name(f".old-{path.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def _fsync_tree(directory: Path) -> None:
    # Data reaches the disk before the rename makes the checkpoint visible.
    for file in directory.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


def _optimizer_to_flat(
    state_dict: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into safetensors tensors and JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    indices = [str(i) for i in state_dict["state"]]
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars,
                     "indices": indices}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(meta["scalars"].get(i, {}))
                                        for i in meta["indices"]}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state[int(index)][name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch (CPU, CUDA), numpy and python RNG states."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = cuda_state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, python_state, gauss = random.getstate()
    meta = {
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
        "python": [version, list(python_state), gauss],
    }
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, cached = meta["numpy"]
    keys = tensors["rng.numpy"].numpy().astype(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))
    version, python_state, gauss = meta["python"]
    random.setstate((version, tuple(python_state), gauss))


def _load_adapter_weights(model: CausalLM, checkpoint: Path) -> None:
    from peft import load_peft_weights, set_peft_model_state_dict

    result: Any = set_peft_model_state_dict(model, load_peft_weights(str(checkpoint)))
    if result.unexpected_keys:  # torch's _IncompatibleKeys
        raise InvalidInput(str(checkpoint), "does not match the adapter being trained: "
                                            f"{result.unexpected_keys[:3]}")


def _save_pretrained(model: CausalLM, directory: Path) -> None:
    """transformers' and peft's own format (a peft model writes its adapter only)."""
    hf_model: Any = model  # PreTrainedModel and PeftModel both have save_pretrained
    hf_model.save_pretrained(directory)
