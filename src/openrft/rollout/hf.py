"""`HFRolloutEngine`: rollouts from a transformers causal LM (CPU or GPU) with our own loop.

The engine renders chat prompts with the tokenizer's chat template, repeats each prompt `n`
times (prompt-major), runs `BatchDecoder` over the whole batch (or chunks of
`max_batch_rows`), and turns token rows into `Sample`s (`CompletionDecoder`). It shares the
model object with the trainer, so `sync_weights` has nothing to copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from openrft.rollout.completions import CompletionDecoder, check_params, render_chat_prompt
from openrft.rollout.decode import (
    BatchDecoder,
    ContinuableForward,
    DecodeForward,
    DecodeSettings,
    TransformersForward,
)
from openrft.rollout.engine import CausalLM, GenerationParams, Messages, Sample
from openrft.rollout.turns import CachedTurns


class HFRolloutEngine:
    """Generate with a transformers (or peft) model and its tokenizer.

    `decode_forward(model)` makes the forward each batch of rows is decoded with; None:
    openrft.fast's (the hand-written Llama forward where it applies). A training run
    passes its `TrainingPath`'s, so `expert.fast_path: off` decodes with the plain
    `TransformersForward`."""

    def __init__(self, model: CausalLM, tokenizer: Any, *, max_batch_rows: int | None = None,
                 decode_forward: Callable[[Any], DecodeForward] | None = None) -> None:
        if decode_forward is None:
            from openrft.fast import decode_forward as fast_decode_forward

            decode_forward = fast_decode_forward
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_rows = max_batch_rows  # None: all prompts x n in one batch
        self.decode_forward = decode_forward
        self.completions = CompletionDecoder(tokenizer)

    def sync_weights(self, model: CausalLM) -> None:
        """The engine samples from the trained model object itself; adopt a replaced one."""
        self.model = model

    def render_prompt(self, messages: Messages, location: str = "messages") -> list[int]:
        """Token ids of `messages` under the chat template, ready for the assistant turn."""
        return render_chat_prompt(self.tokenizer, messages, location)

    def generate(self, prompts: list[Messages], n: int, params: GenerationParams) -> list[Sample]:
        """len(prompts) * n samples, prompt-major (all samples of prompt 0 first)."""
        check_params(n, params)
        prompt_ids = [self.render_prompt(m, f"prompts[{i}]") for i, m in enumerate(prompts)]
        rows = [ids for ids in prompt_ids for _ in range(n)]
        generator = _generator(params.seed, self._device)
        chunk = self.max_batch_rows or max(len(rows), 1)
        samples: list[Sample] = []
        for start in range(0, len(rows), chunk):
            chunk_rows = rows[start : start + chunk]
            decoder = self._decoder(chunk_rows, params, generator)
            for _ in decoder:
                pass
            out = decoder.output
            tokens, logprobs = out.tokens.tolist(), out.logprobs.tolist()
            lengths, stopped = out.lengths.tolist(), out.stopped.tolist()
            for i, prompt in enumerate(chunk_rows):
                samples.append(
                    self.completions.sample(
                        prompt_index=(start + i) // n,
                        prompt_ids=prompt,
                        completion_ids=tokens[i][: lengths[i]],
                        logprobs=logprobs[i][: lengths[i]],
                        stopped=stopped[i],
                        params=params,
                    )
                )
        return samples

    def decode_rows(
        self, rows: list[list[int]], params: GenerationParams, generator: torch.Generator | None
    ) -> list[tuple[list[int], list[float], bool]]:
        """Continue each token row by one model turn: (ids, log-probs, stopped) per row.

        Every call prefills its rows afresh (one batched prefill); multi-turn episodes
        keep their KV cache between turns through `episode_turns` instead, and use this
        where asked to re-prefill (rollout/turns.py)."""
        check_params(1, params)
        chunk = self.max_batch_rows or max(len(rows), 1)
        turns: list[tuple[list[int], list[float], bool]] = []
        for start in range(0, len(rows), chunk):
            decoder = self._decoder(rows[start : start + chunk], params, generator)
            for _ in decoder:
                pass
            out = decoder.output
            tokens, logprobs = out.tokens.tolist(), out.logprobs.tolist()
            for i, (length, stopped) in enumerate(zip(out.lengths.tolist(),
                                                      out.stopped.tolist(), strict=True)):
                turns.append((tokens[i][:length], logprobs[i][:length], bool(stopped)))
        return turns

    def episode_turns(self, params: GenerationParams, generator: torch.Generator | None
                      ) -> CachedTurns:
        """A session of model turns for one batch of episodes that keeps each episode's
        KV cache from one turn to the next (rollout/turns.py). It decodes with the
        engine's forward where that can continue a cache (the plain one and the fast path's
        all can), else with the plain `TransformersForward`."""
        check_params(1, params)
        return CachedTurns(self.model, self._continuable_forward,
                           self._settings(params, generator), self._device,
                           self.max_batch_rows)

    def _continuable_forward(self) -> ContinuableForward:
        forward = self.decode_forward(self.model)
        if isinstance(forward, ContinuableForward):
            return forward
        return TransformersForward(self.model)

    def generator(self, seed: int | None) -> torch.Generator | None:
        """The sampling generator `generate` would use for `seed` (None: unseeded)."""
        return _generator(seed, self._device)

    def stream_chat(
        self, messages: Messages, params: GenerationParams, *, include_reasoning: bool = False
    ) -> Iterator[str]:
        """Text deltas of one chat completion as it is generated (the answer only, unless
        `include_reasoning`). Text that may still become a stop string is held back."""
        check_params(1, params)
        decoder = self._decoder(
            [self.render_prompt(messages)], params, _generator(params.seed, self._device)
        )
        hold = max((len(s) for s in params.stop), default=1) - 1
        sent = ""
        for _ in decoder:
            ids = decoder.tokens[0, : int(decoder.lengths[0])].tolist()
            visible = self.completions.visible_text(ids, params, include_reasoning)
            if not bool(decoder.finished[0]):  # hold back a possible stop prefix / partial char
                visible = visible[: len(visible) - hold].rstrip("\ufffd")
            if len(visible) > len(sent) and visible.startswith(sent):
                yield visible[len(sent) :]
                sent = visible
        ids = decoder.tokens[0, : int(decoder.lengths[0])].tolist()
        final = self.completions.visible_text(ids, params, include_reasoning)
        if len(final) > len(sent) and final.startswith(sent):
            yield final[len(sent) :]

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _decoder(
        self, rows: list[list[int]], params: GenerationParams, generator: torch.Generator | None
    ) -> BatchDecoder:
        batch = self.tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt")
        device = self._device
        return BatchDecoder(self.model, batch["input_ids"].to(device),
                            batch["attention_mask"].to(device),
                            self._settings(params, generator), self.decode_forward(self.model))

    def _settings(self, params: GenerationParams, generator: torch.Generator | None
                  ) -> DecodeSettings:
        return DecodeSettings(
            max_tokens=params.max_tokens,
            pad_id=self.tokenizer.pad_token_id,
            eos_ids=eos_token_ids(self.model, self.tokenizer),
            min_tokens=params.min_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            generator=generator,
            stop_criteria=_stop_criteria(self.tokenizer, params.stop),
            think_start_id=self.completions.think_start_id,
            think_end_id=self.completions.think_end_id,
            reasoning_budget=params.reasoning_budget,
        )


def eos_token_ids(model: CausalLM, tokenizer: Any) -> list[int]:
    """The tokenizer's eos plus any the generation config lists (chat models often have 2)."""
    ids = {tokenizer.eos_token_id}
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(config_eos) if isinstance(config_eos, list) else {config_eos}
    return sorted(i for i in ids if i is not None)


def _stop_criteria(tokenizer: Any, stop: list[str]) -> Any:
    """transformers' tensorised stop-string matcher (handles strings spanning tokens)."""
    if not stop:
        return None
    from transformers.generation.stopping_criteria import StopStringCriteria

    return StopStringCriteria(tokenizer, stop)


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)
