"""Where a model grader's judge runs: an OpenAI-compatible chat endpoint or a local model.

OpenAI's grader object names only a `model`, so one rule picks the backend
(`resolve_judge`, documented in docs/model_graders.md):
- `"local:<dir>"`, or a `model` that is an existing directory -> a local Hugging Face
  model loaded from that directory (`openrft.graders.local_judge`);
- anything else -> a model name sent to `<base_url>/chat/completions`, with the base URL
  and API key from `JudgeSettings` (explicit, else the environment).

Every backend turns `JudgeRequest`s into `JudgeReply`s or `ScoringError`s; it never
raises for one bad request and never waits without a bound.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from openrft.errors import InvalidInput
from openrft.graders.base import ScoringError

logger = logging.getLogger(__name__)

LOCAL_PREFIX = "local:"
DEFAULT_BASE_URL = "https://api.openai.com/v1"  # what the openai SDK uses when unset
_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class JudgeSettings:
    """How to reach judges. Every field has a default; `from_env` reads overrides.

    base_url: chat-completions base URL (".../v1"); None -> env, else OpenAI's.
    api_key: sent as `Authorization: Bearer <key>`; None -> env, else no header.
    timeout_s: per-attempt HTTP timeout in seconds (connect capped at 10 s).
    max_retries: extra attempts after a 408/409/429/5xx answer, timeout or connection
        failure (so at most max_retries + 1 requests per grade).
    backoff_s: first retry delay in seconds, doubled per attempt, capped by max_backoff_s;
        a `Retry-After` header in seconds is honoured up to the same cap.
    structured_output: send `response_format` with a JSON schema (only for endpoints
        that support it; replies are parsed tolerantly either way).
    local_max_new_tokens: local judges' completion cap when the grader sets none.
    local_batch_size: prompts per `generate` call for local judges.
    """

    base_url: str | None = None
    api_key: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    structured_output: bool = False
    local_max_new_tokens: int = 512
    local_batch_size: int = 8

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JudgeSettings:
        """Settings from OPENRFT_JUDGE_* variables, falling back to OPENAI_BASE_URL/_API_KEY."""
        env = os.environ if env is None else env
        return cls(
            base_url=env.get("OPENRFT_JUDGE_BASE_URL") or env.get("OPENAI_BASE_URL") or None,
            api_key=env.get("OPENRFT_JUDGE_API_KEY") or env.get("OPENAI_API_KEY") or None,
            timeout_s=_env_number(env, "OPENRFT_JUDGE_TIMEOUT_S", cls.timeout_s, float, 1e-3),
            max_retries=_env_number(env, "OPENRFT_JUDGE_MAX_RETRIES", cls.max_retries, int, 0),
            structured_output=_env_flag(env, "OPENRFT_JUDGE_STRUCTURED_OUTPUT"),
        )


def _env_number(env: Mapping[str, str], name: str, default: Any, kind: type, minimum: float) -> Any:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        kind_name = "an integer" if kind is int else "a number"
        raise InvalidInput(f"environment {name}", f"expected {kind_name}, got {raw!r}") from None
    if not value >= minimum:
        raise InvalidInput(f"environment {name}", f"must be at least {minimum}, got {raw!r}")
    return value


def _env_flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise InvalidInput(f"environment {name}", f"expected 1/0/true/false, got {raw!r}")


@dataclass(frozen=True)
class JudgeRequest:
    """One chat to send: messages, chat-completions sampling keys, optional response_format."""

    messages: list[dict[str, str]]
    sampling: dict[str, Any] = field(default_factory=dict)
    response_format: dict[str, Any] | None = None


@dataclass
class JudgeReply:
    """What the judge said, with the bookkeeping OpenAI reports for model graders."""

    text: str
    refusal: str | None = None
    finish_reason: str = "stop"
    model: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    latency_s: float = 0.0


JudgeOutcome = JudgeReply | ScoringError


class JudgeBackend(Protocol):
    """Answers judge requests; `complete_many` keeps input order."""

    kind: str  # "http" or "local", recorded in grade metadata

    def complete_many(
        self, requests: Sequence[JudgeRequest], max_concurrency: int
    ) -> list[JudgeOutcome]: ...

    def close(self) -> None: ...


def local_model_dir(model: str) -> Path | None:
    """The directory a `model` names under the resolution rule, or None for an endpoint."""
    if model.startswith(LOCAL_PREFIX):
        path = Path(model[len(LOCAL_PREFIX) :]).expanduser()
        if not path.is_dir():
            raise InvalidInput("model", f"local judge directory {str(path)!r} not found")
        return path
    path = Path(model).expanduser()
    return path if model and path.is_dir() else None


def resolve_judge(model: str, settings: JudgeSettings) -> JudgeBackend:
    """The backend for a grader's `model` (see the module docstring for the rule)."""
    directory = local_model_dir(model)
    if directory is not None:
        from openrft.graders.local_judge import LocalJudge  # torch only when needed

        return LocalJudge(directory, settings)
    return HttpJudge(model, settings)


class HttpJudge:
    """A judge behind an OpenAI-compatible `POST {base_url}/chat/completions`."""

    kind = "http"

    def __init__(self, model: str, settings: JudgeSettings) -> None:
        self.model = model
        self._settings = settings
        base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._url = f"{base_url}/chat/completions"
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        timeout = httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 10.0))
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def complete_many(
        self, requests: Sequence[JudgeRequest], max_concurrency: int
    ) -> list[JudgeOutcome]:
        """Send requests in parallel threads (at most `max_concurrency` in flight)."""
        if max_concurrency <= 1 or len(requests) <= 1:
            return [self._outcome(request) for request in requests]
        with ThreadPoolExecutor(max_workers=max_concurrency) as pool:
            return list(pool.map(self._outcome, requests))

    def close(self) -> None:
        self._client.close()

    def _outcome(self, request: JudgeRequest) -> JudgeOutcome:
        start = time.perf_counter()
        try:
            reply = _reply_from_body(self._post_with_retries(self._body(request)))
        except ScoringError as exc:
            return exc
        reply.latency_s = time.perf_counter() - start
        return reply

    def _body(self, request: JudgeRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": request.messages}
        body.update(request.sampling)
        if request.response_format is not None:
            body["response_format"] = request.response_format
        return body

    def _post_with_retries(self, body: dict[str, Any]) -> Any:
        attempts = self._settings.max_retries + 1
        for attempt in range(attempts):
            response: httpx.Response | None = None
            try:
                response = self._client.post(self._url, json=body)
            except httpx.TimeoutException:
                failure = f"no answer from {self._url} within {self._settings.timeout_s} s"
            except httpx.HTTPError as exc:
                failure = f"cannot reach {self._url}: {exc}"
            else:
                if response.status_code < 400:
                    return _json_body(response)
                failure = f"HTTP {response.status_code} from {self._url}: {_error_text(response)}"
                if response.status_code not in _RETRYABLE_STATUS:
                    raise ScoringError("model_grader_server_error", failure)
            if attempt + 1 < attempts:
                logger.info("judge attempt %d failed (%s); retrying", attempt + 1, failure)
                time.sleep(self._retry_delay(attempt, response))
        raise ScoringError("model_grader_server_error", f"{failure} (after {attempts} attempts)")

    def _retry_delay(self, attempt: int, response: httpx.Response | None) -> float:
        delay = self._settings.backoff_s * (2**attempt)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                delay = float(retry_after)
            except ValueError:
                pass  # an HTTP-date: keep the exponential delay
        return max(0.0, min(delay, self._settings.max_backoff_s))


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ScoringError(
            "model_grader_server_error",
            f"endpoint answered HTTP {response.status_code} with a non-JSON body",
        ) from None


def _error_text(response: httpx.Response) -> str:
    """OpenAI's `{"error": {"message": ...}}` when present, else the start of the body."""
    try:
        error = response.json().get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    except (ValueError, AttributeError):
        pass
    return response.text[:200]


def _reply_from_body(body: Any) -> JudgeReply:
    """A chat completion's first choice; server error when the body is not one."""
    try:
        choice = body["choices"][0]
        message = choice["message"]
        usage = body.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return JudgeReply(
            text=_content_text(message.get("content")),
            refusal=message.get("refusal") or None,
            finish_reason=str(choice.get("finish_reason") or "stop"),
            model=str(body.get("model") or ""),
            usage={
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage.get("completion_tokens") or 0),
                "total_tokens": int(usage.get("total_tokens") or 0),
                "cached_tokens": int(details.get("cached_tokens") or 0),
            },
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise ScoringError(
            "model_grader_server_error", "endpoint answer is not a chat completion"
        ) from None


def _content_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""
