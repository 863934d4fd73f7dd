"""The upload size limit, enforced on the raw request body before anything is buffered.

Starlette spools a multipart upload to disk before the route runs; without this a
client could fill the disk with a body far over the limit. A declared Content-Length
over the limit is refused at once; a chunked body is counted as it arrives and cut off
as soon as it passes the limit. The route checks the file's exact size again.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openrft.service.errors import error_response
from openrft.service.uploads import upload_too_large

UPLOAD_PATH = "/v1/files"
# Multipart framing around the file itself (boundaries, part headers, the purpose field).
MULTIPART_OVERHEAD = 64 * 1024


class UploadSizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] == UPLOAD_PATH):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes + MULTIPART_OVERHEAD
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            error = upload_too_large(self.max_bytes)
            response = error_response(error.status, error.message, error.type, error.param,
                                      error.code)
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise upload_too_large(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)
