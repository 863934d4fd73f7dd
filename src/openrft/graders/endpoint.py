"""`endpoint`: the reward comes from the user's own HTTP server (Azure's agentic preview).

The grader POSTs `{"sample": ..., "item": ..., "trace_id": "trace_..."}` to `url` and
reads `{"score": <number>}` back. Everything the server can do wrong ends in a score of 0
with an error flag, within a bounded time (remote_call.py): a 5xx, a timeout or a refused
connection is retried 3 times, then `endpoint_grader_server_error` (timeouts:
`unresponsive_reward_error`); a 4xx is not retried (`endpoint_grader_server_error`); an
answer over 1 MiB, HTML, invalid JSON, NaN, a string or a missing `score` is
`endpoint_grader_parse_error`. `rate_limit` (requests per second) spaces the calls of
all threads grading with this grader.
"""

from __future__ import annotations

import uuid
from typing import Any

from openrft.graders.base import BaseGrader, Score, ScoringError
from openrft.graders.schema import EndpointGrader
from openrft.remote_call import MAX_TIMEOUT_S, Endpoint, EndpointLimits, finite_number


def new_trace_id() -> str:
    """A trace id in Azure's `trace_...` shape."""
    return f"trace_{uuid.uuid4().hex}"


class EndpointGraderImpl(BaseGrader):
    """One pooled HTTP client and rate limiter per grader, shared by its grading threads."""

    spec: EndpointGrader

    def __init__(self, spec: EndpointGrader, limits: EndpointLimits | None = None) -> None:
        super().__init__(spec)
        limits = limits or EndpointLimits(timeout_s=spec.timeout_s or MAX_TIMEOUT_S)
        self.endpoint = Endpoint(spec.url, dict(spec.headers or {}), limits, spec.rate_limit)

    def score(self, sample: dict[str, Any], item: dict[str, Any]) -> Score:
        """The server's score. An episode's `trace_id` (its tool calls used it) is sent
        with the sample; a plain sample gets a fresh one."""
        sample = dict(sample)
        trace_id = sample.pop("trace_id", None) or new_trace_id()
        reply = self.endpoint.post_json({"sample": sample, "item": item, "trace_id": trace_id})
        metadata: dict[str, Any] = {"trace_id": trace_id, "http_status": reply.status,
                                    "attempts": reply.attempts}
        if reply.failure == "timeout":
            raise ScoringError("unresponsive_reward_error", reply.message)
        if reply.failure in ("server_error", "unreachable", "client_error", "request_too_large"):
            raise ScoringError("endpoint_grader_server_error", reply.message)
        if reply.failure == "invalid_request":
            raise ScoringError("other_error", reply.message)
        if reply.failure is not None:  # response_too_large, invalid_json
            raise ScoringError("endpoint_grader_parse_error", reply.message)
        body = reply.body
        raw = body.get("score") if isinstance(body, dict) else None
        value = finite_number(raw)
        if value is None:
            shown = "missing" if raw is None else f"{type(raw).__name__} {str(raw)[:50]!r}"
            raise ScoringError("endpoint_grader_parse_error",
                               f'expected {{"score": <finite number>}}, score is {shown}')
        threshold = self.spec.pass_threshold
        if threshold is not None:
            metadata.update(pass_threshold=threshold, passed=value >= threshold)
        return Score(value, metadata=metadata)

    def close(self) -> None:
        self.endpoint.close()
