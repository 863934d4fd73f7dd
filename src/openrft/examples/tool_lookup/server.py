"""The `gene_lookup` tool server: a real HTTP server on 127.0.0.1 (stdlib `http.server`).

It speaks the tool protocol of docs/agentic.md: POST `{"type": "function_call",
"call_id", "name", "arguments", "trace_id"}`, answer `{"type": "function_call_output",
"call_id", "output"}`. Names match case- and whitespace-insensitively; an unknown disease
or unreadable arguments get a 200 whose output says so (the model sees it and may retry).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from openrft.examples.tool_lookup.data import Entry

MAX_BODY = 1 << 20


def normalise(name: str) -> str:
    return " ".join(name.lower().split())


def answer(table: dict[str, str], request: Any) -> dict[str, Any]:
    """The tool's answer to one decoded request body."""
    if not isinstance(request, dict):
        return {"type": "function_call_output", "output": "error: expected a JSON object"}
    reply: dict[str, Any] = {"type": "function_call_output", "call_id": request.get("call_id")}
    try:
        arguments = json.loads(request.get("arguments") or "")
    except (TypeError, ValueError):
        arguments = None
    disease = arguments.get("disease") if isinstance(arguments, dict) else None
    if not isinstance(disease, str):
        reply["output"] = 'error: arguments must be {"disease": "<disease name>"}'
    else:
        gene = table.get(normalise(disease))
        reply["output"] = gene if gene is not None else f"no disease named {disease!r}"
    return reply


class GeneLookupServer:
    """Serve the lookup in a background thread; `url` is what a job's `server_url` takes."""

    def __init__(self, entries: Iterable[Entry], port: int = 0) -> None:
        self.table = {normalise(e.name): e.gene for e in entries}
        self.calls = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}/gene_lookup"

    def start(self) -> GeneLookupServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> GeneLookupServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_BODY:
                    self._send(413, {"error": "request too large"})
                    return
                try:
                    request = json.loads(self.rfile.read(length))
                except ValueError:
                    self._send(400, {"error": "the body is not JSON"})
                    return
                with server._lock:
                    server.calls += 1
                self._send(200, answer(server.table, request))

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
