"""The batched KV-cached decode loop behind the HF engine.

Why not `model.generate`: GRPO spends a large share of each step here, and on CPU with
small models the cost is dominated by per-step overhead. This loop does one prefill of the
left-padded (R, P) batch, then feeds one token per row per step through the model's KV
cache, computes logits only for the last position, samples with tensor ops into
pre-allocated (R, T) buffers, and stops as soon as every row is done.

Left padding: position ids count only real tokens (a padded row's first real token is
position 0) and the attention mask hides the pads, so a row's tokens and log-probs do not
depend on how much padding its batch needed.

Recorded log-probs are log_softmax of the *raw* logits (temperature, top-p and forced
tokens do not change them): the trainer uses them as the old policy's log-probs.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from openrft.rollout.sampling import choose_tokens


@dataclass
class DecodeSettings:
    """Everything the loop needs, resolved to token ids (no strings, no tokenizer)."""

    max_tokens: int
    pad_id: int
    eos_ids: list[int]
    min_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    generator: torch.Generator | None = None
    stop_criteria: Any = None  # transformers StoppingCriteria: (ids (R, t), None) -> (R,) bool
    think_start_id: int | None = None
    think_end_id: int | None = None
    reasoning_budget: int | None = None  # tokens allowed inside <think> before </think> is forced


@dataclass
class DecodeOutput:
    """tokens/logprobs (R, T) with pads after each row's end; lengths (R,) count the tokens
    of each completion, its final eos or stop-string token included; `stopped` (R,) says a
    row ended by eos or a stop string rather than by max_tokens."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    lengths: torch.Tensor
    stopped: torch.Tensor


class BatchDecoder:
    """Iterate to run the loop (each step yields the (R,) tokens just chosen); read
    `output` afterwards. Iterating step by step is what the streaming chat uses."""

    def __init__(
        self,
        model: Any,
        input_ids: torch.Tensor,  # (R, P) left-padded prompt ids
        attention_mask: torch.Tensor,  # (R, P) 1 for real tokens
        settings: DecodeSettings,
    ) -> None:
        self.model = model
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        self.settings = settings
        rows, device = input_ids.shape[0], input_ids.device
        self.tokens = torch.full((rows, settings.max_tokens), settings.pad_id, device=device)
        self.logprobs = torch.zeros((rows, settings.max_tokens), device=device)
        self.lengths = torch.zeros(rows, dtype=torch.long, device=device)
        self.finished = torch.zeros(rows, dtype=torch.bool, device=device)
        self.stopped = torch.zeros(rows, dtype=torch.bool, device=device)
        self.eos_ids = torch.tensor(settings.eos_ids, dtype=torch.long, device=device)
        self.in_think, self.think_count = self._initial_think_state()
        self.cache_name = _cache_argument_name(model)

    @property
    def output(self) -> DecodeOutput:
        return DecodeOutput(self.tokens, self.logprobs, self.lengths, self.stopped)

    def _initial_think_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows whose prompt ends with <think> (templates that open the reasoning) start in it."""
        rows = self.input_ids.shape[0]
        start_id = self.settings.think_start_id
        in_think = torch.zeros(rows, dtype=torch.bool, device=self.input_ids.device)
        if start_id is not None:
            in_think = self.input_ids[:, -1] == start_id
        return in_think, torch.zeros(rows, dtype=torch.long, device=self.input_ids.device)

    @torch.inference_mode()
    def __iter__(self) -> Iterator[torch.Tensor]:
        s = self.settings
        prompt_len = self.input_ids.shape[1]
        full_mask = torch.ones(  # (R, P + T): prompt mask, then ones for generated tokens
            (self.input_ids.shape[0], prompt_len + s.max_tokens),
            dtype=self.attention_mask.dtype,
            device=self.input_ids.device,
        )
        full_mask[:, :prompt_len] = self.attention_mask
        real_lengths = self.attention_mask.sum(dim=-1)  # (R,) position of the first new token
        positions = (self.attention_mask.cumsum(dim=-1) - 1).clamp(min=0)  # (R, P)
        out = self.model(
            input_ids=self.input_ids,
            attention_mask=self.attention_mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        for step in range(s.max_tokens):
            token = self._choose(out.logits[:, -1, :].float(), step)  # (R,)
            yield token
            if bool(self.finished.all()) or step == s.max_tokens - 1:
                break
            out = self.model(
                input_ids=token[:, None],
                attention_mask=full_mask[:, : prompt_len + step + 1],
                position_ids=(real_lengths + step)[:, None],
                **{self.cache_name: getattr(out, self.cache_name)},
                use_cache=True,
                logits_to_keep=1,
            )

    def _choose(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """Pick, record and account for one token per row. logits (R, V) -> tokens (R,)."""
        s = self.settings
        log_norm = torch.logsumexp(logits, dim=-1)  # (R,) the model's own distribution
        allowed = logits  # (R, V) what the choice sees; `logits` stays the model's
        if step < s.min_tokens:
            allowed = logits.index_fill(-1, self.eos_ids, float("-inf"))
        token = choose_tokens(allowed, s.temperature, s.top_p, s.generator)
        if s.reasoning_budget is not None and s.think_end_id is not None:
            forced = self.in_think & (self.think_count >= s.reasoning_budget)
            token = torch.where(forced, s.think_end_id, token)
        was_finished = self.finished.clone()
        token = token.masked_fill(was_finished, s.pad_id)
        self.tokens[:, step] = token
        self.logprobs[:, step] = logits.gather(-1, token[:, None]).squeeze(-1) - log_norm
        self.lengths += (~was_finished).long()
        ends = torch.isin(token, self.eos_ids)
        if s.stop_criteria is not None and step + 1 >= s.min_tokens:
            ends |= s.stop_criteria(self.tokens[:, : step + 1], None).to(ends.device)
        self.finished |= ends
        self.stopped |= ends & ~was_finished
        self._track_thinking(token)
        return token

    def _track_thinking(self, token: torch.Tensor) -> None:
        s = self.settings
        if s.think_start_id is None or s.think_end_id is None:
            return
        self.think_count += self.in_think.long()  # tokens spent inside <think> so far
        self.in_think = (self.in_think | (token == s.think_start_id)) & (token != s.think_end_id)


def _cache_argument_name(model: Any) -> str:
    """transformers >= 5.2x calls the KV cache `cache` (`past_key_values` warns); earlier
    releases only know `past_key_values`. Peft models forward kwargs to their base model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    parameters = inspect.signature(base.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"
