"""`x-request-id` and `openai-processing-ms` on every response, and one log line per request.

OpenAI answers every request, errors and 404s included, with a server-made
`x-request-id: req_<32 hex>`; scripts read it (`response.headers["x-request-id"]`, the
SDK's `_request_id`) and log it for support. A client-sent `x-request-id` is not echoed,
as OpenAI does not echo one: the id must be unique and safe to write into our logs.
The id is also put in the request's state so the 500 handler (which runs outside
this middleware) can send it, and in the log line written for each request.
"""

from __future__ import annotations

import logging
import secrets
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("openrft.service.requests")

REQUEST_ID_HEADER = "x-request-id"
PROCESSING_MS_HEADER = "openai-processing-ms"
OPENAI_VERSION = "2020-10-01"  # the REST API version OpenAI reports in `openai-version`


def new_request_id() -> str:
    return "req_" + secrets.token_hex(16)


def request_id_of(scope: Scope) -> str | None:
    """The id the middleware gave this request (None outside it)."""
    return scope.get("state", {}).get("request_id")


class RequestIdMiddleware:
    """Pure ASGI (no response buffering): streaming responses pass through unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                headers[PROCESSING_MS_HEADER] = str(_elapsed_ms(started))
                headers["openai-version"] = OPENAI_VERSION
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log.info("%s %s %s %dms request_id=%s", scope["method"], scope["path"], status,
                     _elapsed_ms(started), request_id)


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
