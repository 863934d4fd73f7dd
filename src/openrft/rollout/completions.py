"""The tokenizer-side work every engine shares: chat prompts in, `Sample`s out.

Engines differ in how they produce token ids (our HF loop, vLLM); what the ids mean is the
same for all of them, so rendering prompts, validating parameters, decoding text, cutting
stop strings, splitting reasoning and parsing structured output live here once.
"""

from __future__ import annotations

from typing import Any

from openrft.errors import InvalidInput
from openrft.rollout.engine import GenerationParams, Messages, Sample
from openrft.rollout.reasoning import THINK_END, THINK_START, parse_reasoning
from openrft.rollout.structured import check_response_format, parse_structured_output


def check_params(n: int, params: GenerationParams) -> None:
    """Reject impossible sampling settings before any work, naming the field."""
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


def render_chat_prompt(tokenizer: Any, messages: Messages, location: str) -> list[int]:
    """Chat-template `messages` (with the assistant generation prompt) into token ids."""
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in messages
    ):
        raise InvalidInput(location, "expected a list of {'role': ..., 'content': ...}")
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as err:  # jinja raises its own error types (e.g. unsupported role)
        raise InvalidInput(location, f"chat template failed: {err}") from None
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def cut_at_stop(text: str, stop: list[str]) -> str:
    """OpenAI semantics: the text ends before the first stop sequence, which is not included."""
    cut = min((i for i in (text.find(s) for s in stop) if i != -1), default=len(text))
    return text[:cut]


class CompletionDecoder:
    """Token ids -> text and `Sample`s for one tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        self.think_start_id: int | None = vocab.get(THINK_START)  # None: no single-token marker
        self.think_end_id: int | None = vocab.get(THINK_END)
        special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
        special |= set(tokenizer.all_special_ids)
        self.hidden_ids = special - {self.think_start_id, self.think_end_id}

    def text(self, ids: list[int]) -> str:
        """Text of `ids` without special tokens (role markers, eos, pad), but keeping
        <think>/</think> even where a tokenizer marks them special, so reasoning can be split."""
        kept = [i for i in ids if i not in self.hidden_ids]
        return self.tokenizer.decode(kept, skip_special_tokens=False)

    def visible_text(self, ids: list[int], params: GenerationParams, reasoning: bool) -> str:
        """What a chat user sees: the answer (or everything, with `reasoning`), stop-cut."""
        raw = cut_at_stop(self.text(ids), params.stop)
        return raw if reasoning else parse_reasoning(raw).answer

    def sample(
        self,
        *,
        prompt_index: int,
        prompt_ids: list[int],
        completion_ids: list[int],
        logprobs: list[float],
        stopped: bool,
        params: GenerationParams,
    ) -> Sample:
        """One `Sample`: stop strings cut the text (the ids keep the token that completed
        the stop), reasoning is split off, and `response_format` is parsed/validated."""
        raw_text = cut_at_stop(self.text(completion_ids), params.stop)
        parts = parse_reasoning(raw_text)
        sample = Sample(
            prompt_index=prompt_index,
            output_text=parts.answer,
            reasoning=parts.reasoning,
            reasoning_unclosed=parts.unclosed,
            prompt_ids=list(prompt_ids),
            completion_ids=list(completion_ids),
            completion_logprobs=list(logprobs),
            finish_reason="stop" if stopped else "length",
            raw_text=raw_text,
        )
        if params.response_format is not None:
            sample.output_json, sample.parse_error = parse_structured_output(
                parts.answer, params.response_format
            )
        return sample
