"""OpenAI's error JSON for every failure: `{"error": {"message", "type", "param", "code"}}`.

The openai SDK reads the `error` key to build its exceptions; FastAPI's default
`{"detail": ...}` would surface as an opaque error, so every exception path is mapped
here: our APIError, OpenRFT's InvalidInput/NotFound, HTTPException and request
validation errors.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from openrft.errors import InvalidInput, NotFound
from openrft.service.request_id import REQUEST_ID_HEADER, request_id_of

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
    """A 404 with an identifier-shaped code (`asset_not_found`)."""
    code = re.sub(r"[^a-z0-9]+", "_", kind.lower()) + "_not_found"
    return APIError(404, f"No such {kind}: '{name}'", param=param, code=code)


def job_not_found(job_id: str) -> APIError:
    """OpenAI's answer for an unknown fine-tuning job, word for word."""
    return APIError(404, f"Could not find fine tune: {job_id}", param="fine_tune_id",
                    code="fine_tune_not_found")


def file_not_found(file_id: str) -> APIError:
    """OpenAI's answer for an unknown file (its code is null)."""
    return APIError(404, f"No such File object: {file_id}", param="id")


def model_not_found(model: str, detail: str = "") -> APIError:
    """OpenAI's answer for an unknown model."""
    return APIError(404, f"The model '{model}' does not exist{detail}", param="model",
                    code="model_not_found")


class ErrorObject(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """OpenAI's error body, documented on every operation of the OpenAPI schema."""

    error: ErrorObject


_DESCRIPTIONS = {
    400: "Invalid request: the message names the field (or file:line) and what is wrong.",
    401: "Missing or incorrect API key.",
    404: "No such object (or it belongs to another project).",
    500: "Unexpected server error.",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in _DESCRIPTIONS.items()
}
UPLOAD_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Upload larger than max_upload_bytes."},
}


def without_422(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop FastAPI's automatic 422 answers: request validation errors are 400 here."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    return schema


def library_error_fields(exc: InvalidInput | NotFound) -> tuple[str, str | None]:
    """(code, param) of a library error, the same in an API answer and a failed job's
    `error`: `invalid_input` naming where, or `<kind>_not_found`."""
    if isinstance(exc, InvalidInput):
        return "invalid_input", exc.location or None
    return re.sub(r"[^a-z0-9]+", "_", exc.kind.lower()) + "_not_found", None


def _validation_code(error_type: str) -> str:
    """OpenAI's code for a malformed parameter, from pydantic's error type."""
    if error_type == "missing":
        return "missing_required_parameter"
    if error_type == "extra_forbidden":
        return "unknown_parameter"
    if error_type.endswith(("_type", "_parsing")) or error_type in ("model_attributes_type",):
        return "invalid_type"
    return "invalid_value"


def error_response(
    status: int, message: str, type: str, param: str | None, code: str | None,
    request_id: str | None = None, headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    headers = dict(headers or {})  # e.g. a 405's `Allow`
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if request_id:  # the 500 handler runs outside RequestIdMiddleware
        headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(status_code=status, content=body, headers=headers or None)


_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route fully serves at this path (RFC 9110's `Allow`)."""
    routes = request.app.router.routes
    allowed = [method for method in _METHODS
               if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                      for route in routes)]
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception path to OpenAI's error JSON."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.param, exc.code)

    @app.exception_handler(InvalidInput)
    async def _invalid_input(_: Request, exc: InvalidInput) -> JSONResponse:
        code, param = library_error_fields(exc)
        return error_response(400, str(exc), "invalid_request_error", param, code)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        code, param = library_error_fields(exc)
        return error_response(404, str(exc), "invalid_request_error", param, code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _TYPE_BY_STATUS.get(exc.status_code, "invalid_request_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette lists only the first matching route's methods
            headers["Allow"] = _allowed_methods(request)
        return error_response(exc.status_code, str(exc.detail), type_, None, None,
                              headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        message = f"{param}: {first['msg']}" if param else str(first["msg"])
        code = _validation_code(str(first.get("type", "")))
        return error_response(400, message, "invalid_request_error", param, code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request_id_of(request.scope)
        log.exception("unhandled error request_id=%s", request_id)
        message = ("The server had an error while processing your request; the server log "
                   f"has the details under request_id={request_id}")  # no paths leak out
        return error_response(500, message, "server_error", None, None, request_id)
