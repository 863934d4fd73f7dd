"""OpenAI's error JSON for every failure: `{"error": {"message", "type", "param", "code"}}`.

The openai SDK reads the `error` key to build its exceptions; FastAPI's default
`{"detail": ...}` would surface as an opaque error, so every exception path is mapped
here: our APIError, OpenRFT's InvalidInput/NotFound, HTTPException and request
validation errors.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from openrft.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    500: "server_error",
}


class APIError(StarletteHTTPException):
    """An error answered to the client with OpenAI's shape.

    An HTTPException subclass so that FastAPI re-raises it unchanged when it comes from
    inside body parsing (the upload size limit), instead of turning it into a plain 400.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPE_BY_STATUS.get(status, "invalid_request_error")


def not_found(kind: str, name: str, param: str | None = None) -> APIError:
    return APIError(404, f"No such {kind}: '{name}'", param=param, code=f"{kind}_not_found")


def error_response(
    status: int, message: str, type: str, param: str | None, code: str | None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(status_code=status, content=body, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception path to OpenAI's error JSON."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.param, exc.code)

    @app.exception_handler(InvalidInput)
    async def _invalid_input(_: Request, exc: InvalidInput) -> JSONResponse:
        return error_response(
            400, str(exc), "invalid_request_error", exc.location or None, "invalid_input"
        )

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, str(exc), "invalid_request_error", None, f"{exc.kind}_not_found")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _TYPE_BY_STATUS.get(exc.status_code, "invalid_request_error")
        return error_response(exc.status_code, str(exc.detail), type_, None, None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        message = f"{param}: {first['msg']}" if param else str(first["msg"])
        return error_response(400, message, "invalid_request_error", param, "invalid_request")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, f"internal error: {exc}", "server_error", None, None)
