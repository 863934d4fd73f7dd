"""`HFRolloutEngine`: rollouts from a transformers causal LM (CPU or GPU) with our own loop.

The engine renders chat prompts with the tokenizer's chat template, repeats each prompt `n`
times (prompt-major), runs `BatchDecoder` over the whole batch (or chunks of
`max_batch_rows`), and turns token rows into `Sample`s: stop strings cut the text (not the
tokens), reasoning is split from the answer, and a `response_format` is parsed/validated.
It shares the model object with the trainer, so `sync_weights` has nothing to copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from openrft.errors import InvalidInput
from openrft.rollout.decode import BatchDecoder, DecodeOutput, DecodeSettings
from openrft.rollout.engine import GenerationParams, Messages, Sample
from openrft.rollout.reasoning import THINK_END, THINK_START, parse_reasoning
from openrft.rollout.structured import check_response_format, parse_structured_output


class HFRolloutEngine:
    """Generate with a transformers model and tokenizer (left padding, KV cache)."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch_rows: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_rows = max_batch_rows  # None: all prompts x n in one batch
        self._think_ids = _think_token_ids(tokenizer)
        self._hidden_ids = _hidden_token_ids(tokenizer, self._think_ids)

    def sync_weights(self, model: Any) -> None:
        """The engine samples from the trained model object itself; adopt a replaced one."""
        self.model = model

    def generate(self, prompts: list[Messages], n: int, params: GenerationParams) -> list[Sample]:
        """len(prompts) * n samples, prompt-major (all samples of prompt 0 first)."""
        _check_params(n, params)
        prompt_ids = [self.render_prompt(messages, f"prompts[{i}]") for i, messages in
                      enumerate(prompts)]
        rows = [ids for ids in prompt_ids for _ in range(n)]
        generator = _generator(params.seed, self._device)
        chunk = self.max_batch_rows or max(len(rows), 1)
        samples: list[Sample] = []
        for start in range(0, len(rows), chunk):
            decoder = self._decoder(rows[start : start + chunk], params, generator)
            for _ in decoder:
                pass
            samples += self._samples(decoder.output, rows[start : start + chunk], params,
                                     first_row=start, n=n)
        return samples

    def stream_chat(
        self, messages: Messages, params: GenerationParams, *, include_reasoning: bool = False
    ) -> Iterator[str]:
        """Text deltas of one chat completion as it is generated (the answer only, unless
        `include_reasoning`). Text that may still become a stop string is held back."""
        _check_params(1, params)
        ids = self.render_prompt(messages, "messages")
        decoder = self._decoder([ids], params, _generator(params.seed, self._device))
        hold = max((len(s) for s in params.stop), default=1) - 1
        sent = ""
        for _ in decoder:
            length, done = int(decoder.lengths[0]), bool(decoder.finished[0])
            ids = decoder.tokens[0, :length].tolist()
            visible = self._visible_text(ids, params, include_reasoning)
            if not done:  # hold back a possible stop-string prefix and a partial character
                visible = visible[: len(visible) - hold].rstrip("\ufffd")
            if len(visible) > len(sent) and visible.startswith(sent):
                yield visible[len(sent) :]
                sent = visible
        final = self._visible_text(decoder.tokens[0, : int(decoder.lengths[0])].tolist(),
                                   params, include_reasoning)
        if len(final) > len(sent) and final.startswith(sent):
            yield final[len(sent) :]

    def render_prompt(self, messages: Messages, location: str) -> list[int]:
        """Chat-template `messages` (with the assistant generation prompt) into token ids."""
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in messages
        ):
            raise InvalidInput(location, "expected a list of {'role': ..., 'content': ...}")
        try:
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception as err:  # jinja raises its own error types (e.g. unsupported role)
            raise InvalidInput(location, f"chat template failed: {err}") from None
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _decoder(
        self, rows: list[list[int]], params: GenerationParams, generator: torch.Generator | None
    ) -> BatchDecoder:
        batch = self.tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt")
        think_start, think_end = self._think_ids
        settings = DecodeSettings(
            max_tokens=params.max_tokens,
            pad_id=self.tokenizer.pad_token_id,
            eos_ids=_eos_ids(self.model, self.tokenizer),
            min_tokens=params.min_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            generator=generator,
            stop_criteria=_stop_criteria(self.tokenizer, params.stop),
            think_start_id=think_start,
            think_end_id=think_end,
            reasoning_budget=params.reasoning_budget,
        )
        device = self._device
        return BatchDecoder(
            self.model, batch["input_ids"].to(device), batch["attention_mask"].to(device), settings
        )

    def _samples(
        self,
        output: DecodeOutput,
        prompt_rows: list[list[int]],
        params: GenerationParams,
        *,
        first_row: int,
        n: int,
    ) -> list[Sample]:
        tokens, logprobs = output.tokens.tolist(), output.logprobs.tolist()
        lengths, stopped = output.lengths.tolist(), output.stopped.tolist()
        samples = []
        for i, prompt_ids in enumerate(prompt_rows):
            ids = tokens[i][: lengths[i]]
            raw_text = _cut_at_stop(self._decode(ids), params.stop)
            parts = parse_reasoning(raw_text)
            sample = Sample(
                prompt_index=(first_row + i) // n,
                output_text=parts.answer,
                reasoning=parts.reasoning,
                reasoning_unclosed=parts.unclosed,
                prompt_ids=list(prompt_ids),
                completion_ids=ids,
                completion_logprobs=logprobs[i][: lengths[i]],
                finish_reason="stop" if stopped[i] else "length",
                raw_text=raw_text,
            )
            if params.response_format is not None:
                sample.output_json, sample.parse_error = parse_structured_output(
                    parts.answer, params.response_format
                )
            samples.append(sample)
        return samples

    def _decode(self, ids: list[int]) -> str:
        """Text of `ids` without special tokens, but keeping <think>/</think>."""
        kept = [i for i in ids if i not in self._hidden_ids]
        return self.tokenizer.decode(kept, skip_special_tokens=False)

    def _visible_text(self, ids: list[int], params: GenerationParams, reasoning: bool) -> str:
        raw = _cut_at_stop(self._decode(ids), params.stop)
        return raw if reasoning else parse_reasoning(raw).answer


def _check_params(n: int, params: GenerationParams) -> None:
    if n < 1:
        raise InvalidInput("n", f"must be >= 1, got {n}")
    if params.max_tokens < 1:
        raise InvalidInput("max_tokens", f"must be >= 1, got {params.max_tokens}")
    if not 0 <= params.min_tokens <= params.max_tokens:
        raise InvalidInput("min_tokens", f"must be in [0, max_tokens], got {params.min_tokens}")
    if params.temperature < 0:
        raise InvalidInput("temperature", f"must be >= 0, got {params.temperature}")
    if not 0 < params.top_p <= 1:
        raise InvalidInput("top_p", f"must be in (0, 1], got {params.top_p}")
    if params.reasoning_budget is not None and params.reasoning_budget < 0:
        raise InvalidInput("reasoning_budget", f"must be >= 0, got {params.reasoning_budget}")
    if any(not isinstance(s, str) or not s for s in params.stop):
        raise InvalidInput("stop", "stop sequences must be non-empty strings")
    if params.response_format is not None:
        check_response_format(params.response_format)


def _think_token_ids(tokenizer: Any) -> tuple[int | None, int | None]:
    """Ids of single-token <think>/</think> markers, or None when the vocab has none."""
    vocab = tokenizer.get_vocab()
    return vocab.get(THINK_START), vocab.get(THINK_END)


def _hidden_token_ids(tokenizer: Any, keep: tuple[int | None, ...]) -> set[int]:
    """Special tokens (role markers, bos/eos/pad) are dropped from decoded text; the think
    markers are kept even where a tokenizer marks them special, so reasoning can be split."""
    special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    return (special | set(tokenizer.all_special_ids)) - {i for i in keep if i is not None}


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
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


def _cut_at_stop(text: str, stop: list[str]) -> str:
    """OpenAI semantics: the text ends before the first stop sequence, which is not included."""
    cut = min((i for i in (text.find(s) for s in stop) if i != -1), default=len(text))
    return text[:cut]


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)
