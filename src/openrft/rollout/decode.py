"""The batched KV-cached decode loop behind the HF engine.

Why not `model.generate`: GRPO spends a large share of each step here, and on CPU with
small models the cost is dominated by per-step overhead. This loop does one prefill of the
left-padded (R, P) batch, then feeds one token per row per step through the model's KV
cache, computes logits only for the last position, samples with tensor ops into
pre-allocated (R, T) buffers, and stops as soon as every row is done.

Left padding: position ids count only real tokens (a padded row's first real token is
position 0) and the attention mask hides the pads, so a row's tokens and log-probs do not
depend on how much padding its batch needed.

The forward is a `DecodeForward` (prefill, then one step per token). The plain one here,
`TransformersForward`, runs the model's own modules and KV cache; the engine normally
passes the fast path's (openrft.fast: a hand-written Llama-family forward with fused,
prepacked weights and in-place KV buffers, or a preallocated transformers cache).

Recorded log-probs are log_softmax of the *raw* logits (temperature, top-p and forced
tokens do not change them): the trainer uses them as the old policy's log-probs.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from openrft.rollout.engine import CausalLM
from openrft.rollout.sampling import choose_tokens, sample_from_probs


class DecodeForward(Protocol):
    """The model forward of one decode: `prefill` the (R, P) left-padded prompts with room
    for `extra` more positions, then `step` one token per row; both return the (R, V)
    logits of each row's last position."""

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor, extra: int) -> torch.Tensor: ...

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ContinuableForward(Protocol):
    """A `DecodeForward` whose KV cache outlives its decode, so the next model turn of a
    multi-turn episode prefills only its new tokens (rollout/turns.py). `length`: the
    positions in the cache."""

    length: int

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor, extra: int) -> torch.Tensor: ...

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor: ...

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only cache rows `rows` (R',), in that order."""
        ...

    def extend(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               positions: torch.Tensor, extra: int) -> torch.Tensor:
        """Run (R, N) more tokens per row on top of the cache, with room for `extra` more
        positions; `attention_mask` (R, length + N) covers the cached and the new
        positions. Returns the (R, V) logits of each row's last position."""
        ...


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
        model: CausalLM,
        input_ids: torch.Tensor,  # (R, P) left-padded prompt ids
        attention_mask: torch.Tensor,  # (R, P) 1 for real tokens
        settings: DecodeSettings,
        forward: DecodeForward | None = None,  # None: the plain TransformersForward
        past_lengths: torch.Tensor | None = None,  # (R,) real tokens already in `forward`'s
        # cache (a continued episode, rollout/turns.py); positions count on from there
    ) -> None:
        self.model = model
        self.past_lengths = past_lengths
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
        self.forward = forward or TransformersForward(model)

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
        past = 0 if self.past_lengths is None else self.past_lengths  # (R,) or 0
        real_lengths = past + self.attention_mask.sum(dim=-1)  # (R,) position of the next token
        positions = (self.attention_mask.cumsum(dim=-1) - 1).clamp(min=0)  # (R, P)
        if self.past_lengths is not None:  # a continued row counts on from its cache
            positions = (self.past_lengths[:, None] + self.attention_mask.cumsum(dim=-1) - 1)
        forward = self.forward
        logits = forward.prefill(self.input_ids, self.attention_mask, positions, s.max_tokens)
        for step in range(s.max_tokens):
            token = self._choose(logits.float(), step)  # (R,)
            yield token
            if bool(self.finished.all()) or step == s.max_tokens - 1:
                break
            logits = forward.step(token, real_lengths + step)

    def _choose(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """Pick, record and account for one token per row. logits (R, V) -> tokens (R,)."""
        s = self.settings
        log_probs = torch.log_softmax(logits, dim=-1)  # (R, V) the model's own distribution
        if s.temperature == 1.0 and s.top_p >= 1.0:  # sample the model's distribution itself
            probs = log_probs.exp()
            if step < s.min_tokens:
                probs.index_fill_(-1, self.eos_ids, 0.0)
            token = sample_from_probs(probs, s.generator)
        else:
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
        self.logprobs[:, step] = log_probs.gather(-1, token[:, None]).squeeze(-1)
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


class TransformersForward:
    """Decode through the model's own forward and KV cache (any transformers causal LM):
    the plain `DecodeForward`, and the oracle of the fast ones."""

    def __init__(self, model: CausalLM) -> None:
        self.model = model
        self.cache_name = _cache_argument_name(model)
        self.cache: Any = None
        self.mask = torch.empty(0)
        self.length = 0  # positions in the cache

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor, extra: int) -> torch.Tensor:
        self.mask = torch.ones(  # (R, P + extra): prompt mask, then ones for new tokens
            (input_ids.shape[0], input_ids.shape[1] + extra),
            dtype=attention_mask.dtype, device=input_ids.device,
        )
        self.mask[:, : input_ids.shape[1]] = attention_mask
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=positions, use_cache=True, logits_to_keep=1)
        self.cache = getattr(out, self.cache_name)
        self.length = input_ids.shape[1]
        return out.logits[:, -1, :]

    def keep_rows(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self.mask = self.mask[rows]

    def extend(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               positions: torch.Tensor, extra: int) -> torch.Tensor:
        length = attention_mask.shape[1]
        self.mask = attention_mask.new_ones((attention_mask.shape[0], length + extra))
        self.mask[:, :length] = attention_mask
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=positions, **{self.cache_name: self.cache},
                         use_cache=True, logits_to_keep=1)
        self.cache = getattr(out, self.cache_name)
        self.length = length
        return out.logits[:, -1, :]

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        self.length += 1
        out = self.model(input_ids=tokens[:, None], attention_mask=self.mask[:, : self.length],
                         position_ids=positions[:, None], **{self.cache_name: self.cache},
                         use_cache=True, logits_to_keep=1)
        self.cache = getattr(out, self.cache_name)
        return out.logits[:, -1, :]


def _cache_argument_name(model: CausalLM) -> str:
    """transformers >= 5.2x calls the KV cache `cache` (`past_key_values` warns); earlier
    releases only know `past_key_values`. Peft models forward kwargs to their base model."""
    get_base_model = getattr(model, "get_base_model", None)  # a peft model's
    base = get_base_model() if get_base_model is not None else model
    parameters = inspect.signature(base.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"
