"""Executing the model's tool calls on the user's tool servers (Azure's agentic preview).

A job lists `tools: [{name, server_url, headers}]`. For each call the model writes, the
executor POSTs `{"type": "function_call", "call_id", "name", "arguments", "trace_id"}`
to that tool's `server_url` and expects `{"type": "function_call_output", "call_id",
"output"}` back; `output` goes back into the episode as a tool message. Calls of one
turn (across all episodes of a batch) run concurrently.

Every outcome is bounded and recorded (`ToolResult`):
- a 2xx with `output`: the output (text, or JSON text) is shown to the model;
- a request or answer over 1 MiB: the model sees a 413 message;
- a 4xx: its `output` if it has one, else the error serialised for the model;
- a 2xx that is not JSON (HTML, text), an unknown tool, an unreadable call: an error
  message to the model;
- a 5xx, a timeout or a refused connection, retried 3 times: the rollout is discarded
  with that reason (`discard`).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from openrft.remote_call import MAX_TIMEOUT_S, Endpoint, EndpointLimits
from openrft.rollout.tool_format import ToolCall
from openrft.strict_model import StrictModel


class ToolServer(StrictModel):
    """One entry of `method.reinforcement.tools` (Azure's shape, plus an optional timeout)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """The function name the model calls (as in the rows' `tools` schemas)."""
    server_url: str = Field(pattern=r"^https?://\S+$")
    """Where calls are POSTed."""
    headers: dict[str, str] | None = None
    """Sent with every call (e.g. an API key); never logged or shown."""
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S)
    """OpenRFT extension: per-attempt timeout in seconds (default and maximum 600)."""


@dataclass
class ToolResult:
    """What one call produced: the text the model sees, and what happened."""

    call: ToolCall
    output: str  # the tool message content shown to the model
    error: str | None = None  # why the call failed (kept for metrics); None on success
    discard: str | None = None  # set when the rollout must be discarded (5xx/timeout)
    latency_s: float = 0.0
    status: int | None = None


class ToolExecutor:
    """The job's tool servers, each with a pooled client; `run` executes calls concurrently."""

    def __init__(self, servers: list[ToolServer], max_concurrency: int = 16,
                 limits: EndpointLimits | None = None) -> None:
        self.max_concurrency = max_concurrency
        self.endpoints = {
            s.name: Endpoint(s.server_url, dict(s.headers or {}),
                             limits or EndpointLimits(timeout_s=s.timeout_s or MAX_TIMEOUT_S))
            for s in servers
        }

    @property
    def names(self) -> list[str]:
        return list(self.endpoints)

    def run(self, calls: list[tuple[ToolCall, str]]) -> list[ToolResult]:
        """Execute `(call, trace_id)` pairs concurrently; results in the same order."""
        if len(calls) <= 1:
            return [self.call(c, t) for c, t in calls]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(calls))) as pool:
            return list(pool.map(lambda pair: self.call(*pair), calls))

    def call(self, call: ToolCall, trace_id: str) -> ToolResult:
        """One call, ending in a ToolResult whatever the server does."""
        if call.error is not None:
            return ToolResult(call, _error_text(call.error), error="invalid_call")
        endpoint = self.endpoints.get(call.name)
        if endpoint is None:
            known = ", ".join(self.endpoints) or "none"
            return ToolResult(call, _error_text(f"unknown tool {call.name!r} (tools: {known})"),
                              error="unknown_tool")
        reply = endpoint.post_json({"type": "function_call", "call_id": call.call_id,
                                    "name": call.name, "arguments": call.arguments,
                                    "trace_id": trace_id})
        result = ToolResult(call, "", latency_s=reply.latency_s, status=reply.status)
        reply.message = reply.message.replace(endpoint.url, f"tool {call.name!r}")  # no URLs
        body = reply.body if isinstance(reply.body, dict) else None
        if reply.ok and body is not None and "output" in body:
            result.output = _output_text(body["output"])
        elif reply.ok:  # a JSON answer without `output`: show it whole
            result.output = json.dumps(reply.body)
        elif reply.failure in ("server_error", "timeout", "unreachable"):
            result.error = result.discard = f"{call.name}: {reply.message}"
        elif reply.failure == "client_error" and body is not None and "output" in body:
            result.output, result.error = _output_text(body["output"]), "client_error"
        elif reply.failure in ("request_too_large", "response_too_large"):
            result.output = _error_text(f"413 Payload Too Large: {reply.message}")
            result.error = reply.failure
        else:  # client_error without output, invalid_json (HTML, text)
            result.output, result.error = _error_text(reply.message), reply.failure
        return result

    def close(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.close()


def _output_text(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output)


def _error_text(message: str) -> str:
    return json.dumps({"error": message})
