"""Bounded JSON POSTs to user-run HTTP endpoints (tool servers, endpoint graders).

Azure's agentic RFT preview fixes the contract both share: payloads of at most 1 MB in
and out, a 10-minute timeout, a 5xx retried 3 times, and an endpoint sized for a request
rate. `post_json` enforces every one of those bounds and never raises for what the far
side does: it returns a `RemoteReply` whose `failure` says what went wrong, so callers
decide whether that becomes a 0 with an error flag, a message to the model or a
discarded rollout. The worst case is bounded: (retries + 1) * timeout_s plus backoff.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

MAX_PAYLOAD_BYTES = 1_048_576  # 1 MiB, in and out (Azure: "1 MB")
MAX_TIMEOUT_S = 600.0  # 10 minutes
SERVER_RETRIES = 3  # a 5xx (or no answer) is retried this many times

Failure = Literal[
    "invalid_request",  # our body cannot be JSON (NaN or infinity in it): not sent
    "request_too_large",  # our body is over the limit: not sent (shown as a 413)
    "response_too_large",  # the answer is over the limit: cut off (shown as a 413)
    "client_error",  # a 4xx answer
    "server_error",  # 5xx on every attempt
    "timeout",  # no (complete) answer within timeout_s on every attempt
    "unreachable",  # connection refused / DNS / protocol error on every attempt
    "invalid_json",  # a 2xx answer whose body is not JSON (HTML, text, NaN, ...)
]


@dataclass(frozen=True)
class EndpointLimits:
    """Bounds of one endpoint call. timeout_s is per attempt and total per attempt (a slow
    trickle of bytes cannot stretch it); backoff doubles per retry up to max_backoff_s."""

    timeout_s: float = MAX_TIMEOUT_S
    max_request_bytes: int = MAX_PAYLOAD_BYTES
    max_response_bytes: int = MAX_PAYLOAD_BYTES
    retries: int = SERVER_RETRIES
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0


@dataclass
class RemoteReply:
    """What one bounded call produced: parsed JSON, or the failure and a safe message."""

    status: int | None  # the last HTTP status, None when nothing came back
    body: Any = None  # parsed JSON of a 2xx answer (or of a 4xx, when it is JSON)
    failure: Failure | None = None
    message: str = ""  # human text for logs, events and the model (no headers, no secrets)
    attempts: int = 0
    latency_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None


class RateLimiter:
    """At most `rate` calls started per second across threads (None: unlimited), spacing
    starts evenly so an endpoint sized for N QPS never sees a burst above it."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


@dataclass
class Endpoint:
    """One URL with its headers, limits, rate limiter and pooled HTTP client."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    limits: EndpointLimits = field(default_factory=EndpointLimits)
    rate_limit: float | None = None  # requests per second

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.rate_limit)
        timeout = httpx.Timeout(self.limits.timeout_s, connect=min(self.limits.timeout_s, 10.0))
        self.client = httpx.Client(timeout=timeout, headers=self.headers)

    def close(self) -> None:
        self.client.close()

    def post_json(self, payload: Any) -> RemoteReply:
        """POST `payload` as JSON within the limits; retry 5xx, timeouts and connection
        failures `limits.retries` times; never raises for the endpoint's behaviour."""
        started = time.perf_counter()
        try:
            data = json.dumps(payload, allow_nan=False, default=str).encode()
        except ValueError as exc:  # NaN/inf (JSONL rows may hold them): not valid JSON
            return RemoteReply(status=None, failure="invalid_request",
                               message=f"request cannot be sent as JSON: {exc}")
        if len(data) > self.limits.max_request_bytes:
            return RemoteReply(
                status=413, failure="request_too_large",
                message=f"request of {len(data)} bytes is over the "
                        f"{self.limits.max_request_bytes}-byte limit (413)",
            )
        attempts = self.limits.retries + 1
        reply = RemoteReply(status=None)
        for attempt in range(attempts):
            self.limiter.wait()
            reply = self._attempt(data)
            reply.attempts = attempt + 1
            if reply.failure not in ("server_error", "timeout", "unreachable"):
                break
            if attempt + 1 < attempts:
                time.sleep(min(self.limits.backoff_s * 2**attempt, self.limits.max_backoff_s))
        if reply.failure in ("server_error", "timeout", "unreachable") and attempts > 1:
            reply.message += f" (after {attempts} attempts)"
        reply.latency_s = time.perf_counter() - started
        return reply

    def _attempt(self, data: bytes) -> RemoteReply:
        deadline = time.monotonic() + self.limits.timeout_s
        headers = {"content-type": "application/json"}
        try:
            with self.client.stream("POST", self.url, content=data, headers=headers) as response:
                raw = _read_capped(response, self.limits.max_response_bytes, deadline)
        except httpx.TimeoutException:
            return RemoteReply(None, failure="timeout",
                               message=f"no answer from {self.url} within "
                                       f"{self.limits.timeout_s:g} s")
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
            return RemoteReply(None, failure="unreachable",
                               message=f"cannot reach {self.url}: {type(exc).__name__}")
        status = response.status_code
        if raw is None:
            return RemoteReply(status, failure="response_too_large",
                               message=f"answer from {self.url} is over the "
                                       f"{self.limits.max_response_bytes}-byte limit (413)")
        if raw is _LATE:
            return RemoteReply(status, failure="timeout",
                               message=f"answer from {self.url} not complete within "
                                       f"{self.limits.timeout_s:g} s")
        assert isinstance(raw, bytes)
        body, parsed = _parse_json(raw)
        reply = RemoteReply(status, body=body if parsed else None)
        if status >= 500:
            reply.failure, reply.message = "server_error", f"HTTP {status} from {self.url}"
        elif status >= 400:
            reply.failure = "client_error"
            reply.message = f"HTTP {status} from {self.url}: {_snippet(raw)}"
        elif not parsed:
            reply.failure = "invalid_json"
            reply.message = f"answer from {self.url} is not JSON: {_snippet(raw)}"
        return reply


_LATE = object()  # the answer was still arriving at the deadline


def _read_capped(response: httpx.Response, limit: int, deadline: float) -> bytes | object | None:
    """The body, or None once it passes `limit` bytes, or _LATE past the deadline."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        if time.monotonic() > deadline:
            return _LATE
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    """Strict JSON: NaN/Infinity literals (which Python's json accepts) are refused."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(raw, parse_constant=refuse), True
    except (ValueError, UnicodeDecodeError):
        return None, False


def _snippet(raw: bytes, limit: int = 200) -> str:
    text = raw[: limit * 4].decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:limit] + ("..." if len(text) > limit else "")


def finite_number(value: Any) -> float | None:
    """`value` as a float when it is a real JSON number (not a bool, string or NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
