"""A real loopback HTTP server speaking OpenAI chat completions, with scripted replies.

Tests point a judge (or any OpenAI client) at `server.base_url` and script what it says:

    with ChatServer() as server:
        server.enqueue(ScriptedReply('{"result": 0.8}'), ScriptedReply(status=500))
        ...  # POST {base_url}/chat/completions answers in that order, then `server.default`
        server.requests[0].body["messages"]  # what the client sent

`server.responder` (a callable `body -> ScriptedReply`) replaces the queue when set, for
replies that depend on the request. The server runs on 127.0.0.1 with an ephemeral port
in a daemon thread; `stop()` releases delayed replies at once so no test waits on it.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ScriptedReply:
    """One answer: a chat completion with `content`, or an error `status`, or a raw body."""

    content: str | None = ""
    status: int = 200
    delay_s: float = 0.0  # wait before answering (interrupted by stop())
    refusal: str | None = None
    finish_reason: str = "stop"
    usage: dict[str, Any] = field(
        default_factory=lambda: {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    )
    raw_body: str | None = None  # sent verbatim (status kept) instead of a completion
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordedRequest:
    """What a client sent: path, headers (lower-case names) and the parsed JSON body."""

    path: str
    headers: dict[str, str]
    body: Any


class ChatServer:
    """Loopback `POST /v1/chat/completions` (and `GET /v1/models`) answering from a script."""

    def __init__(self, default: ScriptedReply | None = None) -> None:
        self.default = default if default is not None else ScriptedReply('{"result": 1}')
        self.responder: Callable[[Any], ScriptedReply] | None = None
        self.requests: list[RecordedRequest] = []
        self.peak_in_flight = 0
        self._queue: deque[ScriptedReply] = deque()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def enqueue(self, *replies: ScriptedReply) -> None:
        """Answer the next requests with these replies, in order."""
        self._queue.extend(replies)

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _next_reply(self, body: Any) -> ScriptedReply:
        if self.responder is not None:
            return self.responder(body)
        try:
            return self._queue.popleft()
        except IndexError:
            return self.default

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


def completion_body(reply: ScriptedReply, model: str) -> dict[str, Any]:
    """The chat-completion JSON OpenAI would send for a scripted reply."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.refusal is not None:
        message["refusal"] = reply.refusal
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": reply.usage,
    }


def _handler_for(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Silence per-request logging on stderr."""

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                self._send(404, {"error": {"message": "not found", "type": "invalid_request"}})
                return
            self._send(200, {"object": "list", "data": [{"id": "judge", "object": "model"}]})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            headers = {name.lower(): value for name, value in self.headers.items()}
            server.requests.append(RecordedRequest(self.path, headers, body))
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": "not found", "type": "invalid_request"}})
                return
            server._enter()
            try:
                self._answer(server._next_reply(body), body)
            finally:
                server._leave()

        def _answer(self, reply: ScriptedReply, body: Any) -> None:
            if reply.delay_s and server._stopping.wait(reply.delay_s):
                return  # the server is stopping: drop the answer
            if reply.raw_body is not None:
                self._send(reply.status, reply.raw_body, reply.headers)
            elif reply.status >= 400:
                error = {"message": f"scripted error {reply.status}", "type": "server_error"}
                self._send(reply.status, {"error": error}, reply.headers)
            else:
                model = body.get("model", "") if isinstance(body, dict) else ""
                self._send(200, completion_body(reply, model), reply.headers)

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            encoded = data.encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(encoded)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(encoded)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. its timeout): nothing to answer

    return Handler
