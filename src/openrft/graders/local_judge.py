"""A judge that is a local Hugging Face causal LM (`model: "local:/path/to/dir"`).

The model is loaded once per process and directory through `openrft.models.load` (so
device, dtype, padding and chat template match the rest of OpenRFT) and is shared by
every grader that names it. A whole `grade_many` call is answered in left-padded
batches. Decoding is greedy when the grader sets no temperature (or 0); otherwise it
samples with the grader's `seed` inside a forked RNG, so judging never disturbs the
trainer's random state. `response_format` is ignored: replies are parsed tolerantly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from openrft.errors import OpenRFTError
from openrft.graders.base import ScoringError
from openrft.graders.judge_backends import JudgeOutcome, JudgeReply, JudgeRequest, JudgeSettings
from openrft.models.load import LoadedModel, load_model

logger = logging.getLogger(__name__)

_LOADED: dict[Path, LoadedModel] = {}  # resolved directory -> loaded judge
_LOAD_LOCK = threading.Lock()


def load_judge(directory: Path) -> LoadedModel:
    """The judge model in `directory`, loaded once per process (eval mode, left padding)."""
    key = directory.resolve()
    with _LOAD_LOCK:
        if key not in _LOADED:
            try:
                _LOADED[key] = load_model(key)
            except OpenRFTError as exc:
                raise ScoringError(
                    "model_grader_server_error", f"cannot load local judge: {exc}"
                ) from None
        return _LOADED[key]


class LocalJudge:
    """Batched generation with a local model; one `generate` at a time per process."""

    kind = "local"
    _generate_lock = threading.Lock()  # CPU threads are shared: batch instead of overlapping

    def __init__(self, directory: Path, settings: JudgeSettings) -> None:
        self.directory = directory
        self._settings = settings

    def complete_many(
        self, requests: Sequence[JudgeRequest], max_concurrency: int
    ) -> list[JudgeOutcome]:
        """Answer requests in batches of `settings.local_batch_size` (input order kept).

        All requests of one grader share sampling parameters; each batch uses its first's.
        """
        if not requests:
            return []
        try:
            judge = load_judge(self.directory)
        except ScoringError as exc:
            return [exc for _ in requests]
        outcomes: list[JudgeOutcome] = []
        size = max(1, self._settings.local_batch_size)
        for start in range(0, len(requests), size):
            batch = requests[start : start + size]
            try:
                outcomes.extend(self._generate(judge, batch))
            except Exception as exc:  # a chat template or generate failure fails the batch only
                logger.exception("local judge %s failed", self.directory)
                failure = ScoringError("model_grader_server_error", f"local judge failed: {exc}")
                outcomes.extend(failure for _ in batch)
        return outcomes

    def close(self) -> None:
        """Nothing to release: loaded judges stay cached for the process."""

    def _generate(self, judge: LoadedModel, batch: Sequence[JudgeRequest]) -> list[JudgeReply]:
        started = time.perf_counter()
        tokenizer = judge.tokenizer
        prompts = [
            tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
            for r in batch
        ]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = encoded.to(judge.device)
        sampling = batch[0].sampling
        max_new_tokens = int(sampling.get("max_tokens") or self._settings.local_max_new_tokens)
        with self._generate_lock, torch.inference_mode(), torch.random.fork_rng(devices=[]):
            if sampling.get("seed") is not None:
                torch.manual_seed(int(sampling["seed"]))
            output = judge.model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                **_decoding_options(sampling),
            )  # (B, T_prompt + T_new)
        completions = output[:, encoded["input_ids"].shape[1] :]  # (B, T_new)
        latency = (time.perf_counter() - started) / len(batch)
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()  # (B,)
        return [
            _reply(tokenizer, row, int(prompt_tokens), max_new_tokens, latency, self.directory)
            for row, prompt_tokens in zip(completions, prompt_lengths, strict=True)
        ]


def _decoding_options(sampling: dict[str, Any]) -> dict[str, Any]:
    temperature = sampling.get("temperature")
    if not temperature:
        return {"do_sample": False}
    options: dict[str, Any] = {"do_sample": True, "temperature": float(temperature)}
    if sampling.get("top_p") is not None:
        options["top_p"] = float(sampling["top_p"])
    return options


def _reply(
    tokenizer: Any,
    row: torch.Tensor,
    prompt_tokens: int,
    max_new_tokens: int,
    latency_s: float,
    directory: Path,
) -> JudgeReply:
    """One generated row (T_new,) as a reply: text up to EOS, usage, finish reason."""
    ids = row.tolist()
    eos = tokenizer.eos_token_id
    ended = eos in ids
    ids = ids[: ids.index(eos)] if ended else [t for t in ids if t != tokenizer.pad_token_id]
    completion_tokens = len(ids) + (1 if ended else 0)
    return JudgeReply(
        text=tokenizer.decode(ids, skip_special_tokens=True),
        finish_reason="stop" if ended or len(ids) < max_new_tokens else "length",
        model=f"local:{directory}",
        usage={
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cached_tokens": 0,
        },
        latency_s=latency_s,
    )
