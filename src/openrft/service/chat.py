"""Chat completions from a served model: one response, or SSE chunks ending in `[DONE]`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from openrft.rollout.engine import GenerationParams
from openrft.service.models_cache import ServedModel
from openrft.service.schemas import ChatCompletionRequest
from openrft.service.store.ids import new_id


def generation_params(body: ChatCompletionRequest, default_max_tokens: int) -> GenerationParams:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    return GenerationParams(
        max_tokens=body.max_completion_tokens or body.max_tokens or default_max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=stop,
        seed=body.seed,
        response_format=body.response_format,
    )


def messages_of(body: ChatCompletionRequest) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in body.messages]


def completion(body: ChatCompletionRequest, served: ServedModel,
               params: GenerationParams) -> dict[str, Any]:
    """A `chat.completion` object with `n` choices and token usage."""
    with served.lock:
        samples = served.engine.generate([messages_of(body)], body.n, params)
    prompt_tokens = len(samples[0].prompt_ids) if samples else 0
    completion_tokens = sum(len(s.completion_ids) for s in samples)
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": sample.output_text,
                            "refusal": None},
                "finish_reason": sample.finish_reason,
                "logprobs": None,
            }
            for index, sample in enumerate(samples)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def stream_chunks(body: ChatCompletionRequest, served: ServedModel,
                  params: GenerationParams) -> Iterator[str]:
    """SSE lines: a role chunk, one chunk per text piece, a finish chunk, then `[DONE]`."""
    base = {"id": new_id("chatcmpl-"), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": body.model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                          "logprobs": None}]})

    yield chunk({"role": "assistant", "content": ""})
    text = ""
    with served.lock:
        for piece in served.engine.stream_chat(messages_of(body), params):
            if piece:
                text += piece
                yield chunk({"content": piece})
    yield chunk({}, finish="stop")
    if body.stream_options and body.stream_options.include_usage:
        yield _sse({**base, "choices": [], "usage": _stream_usage(body, served, text)})
    yield "data: [DONE]\n\n"


def _stream_usage(body: ChatCompletionRequest, served: ServedModel, text: str) -> dict[str, int]:
    """Token usage of a streamed answer: the prompt as rendered, the text re-tokenized
    (the stream yields text, so hidden reasoning tokens are not counted)."""
    prompt = len(served.engine.render_prompt(messages_of(body), "messages"))
    completion = len(served.tokenizer.encode(text, add_special_tokens=False))
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}
