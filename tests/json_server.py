"""A real loopback HTTP server for tool servers and endpoint graders, answering by a script.

    with JsonServer(lambda request: Reply({"score": 1.0})) as server:
        ...  # POST server.url(...) answers through the responder
        server.requests[0].body  # what the client sent

The responder sees each `RecordedRequest` and returns a `Reply`: a JSON body, a raw body
(HTML, invalid JSON, a giant string), a status and an optional delay. It runs on
127.0.0.1 with an ephemeral port in daemon threads; `stop()` releases delayed replies at
once so no test waits on a hanging answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    body: Any = None  # JSON-encoded unless `raw` is set
    status: int = 200
    raw: str | bytes | None = None  # sent verbatim
    delay_s: float = 0.0  # wait before answering (interrupted by stop())
    content_type: str = "application/json"


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any
    size: int = 0


@dataclass
class JsonServer:
    responder: Callable[[RecordedRequest], Reply]
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def start(self) -> JsonServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> JsonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _handler_for(server: JsonServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Silence per-request logging."""

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            request = RecordedRequest(
                self.path, {k.lower(): v for k, v in self.headers.items()}, body, len(raw)
            )
            with server.lock:
                server.requests.append(request)
            reply = server.responder(request)
            if reply.delay_s and server.stopping.wait(reply.delay_s):
                return
            data = reply.raw if reply.raw is not None else json.dumps(reply.body)
            encoded = data.encode() if isinstance(data, str) else data
            try:
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                self.send_header("content-length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler
