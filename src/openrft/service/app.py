"""`create_app(settings, db)`: the FastAPI application, built from validated settings.

No engine or model is created at import time: the database comes in as an argument
(tests pass their own), models for chat load on first use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from openrft import __version__
from openrft.service.errors import error_response, install_error_handlers
from openrft.service.models_cache import ModelCache
from openrft.service.routes import chat, dashboard, files, graders, jobs, models
from openrft.service.settings import ServiceSettings
from openrft.service.store.db import Database

# Multipart framing around the file itself (boundaries, headers, the purpose field).
_MULTIPART_OVERHEAD = 64 * 1024


def create_app(settings: ServiceSettings, db: Database | None = None) -> FastAPI:
    """The service app; `db` defaults to the settings' database (tables created)."""
    settings.prepare()
    if db is None:
        db = Database(settings.db_url)
    db.create_tables()
    app = FastAPI(title="OpenRFT", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.settings = settings
    app.state.db = db
    app.state.model_cache = ModelCache(settings.loaded_models)
    install_error_handlers(app)
    _limit_upload_size(app, settings.max_upload_bytes)
    for module in (files, jobs, graders, models, chat, dashboard):
        app.include_router(module.router)
    return app


def _limit_upload_size(app: FastAPI, max_bytes: int) -> None:
    """Refuse an oversized upload from its Content-Length, before reading the body."""

    @app.middleware("http")
    async def _check_length(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if (request.method == "POST" and request.url.path == "/v1/files" and length
                and length.isdigit() and int(length) > max_bytes + _MULTIPART_OVERHEAD):
            return error_response(
                413, f"file: upload exceeds the limit of {max_bytes} bytes (max_upload_bytes)",
                "invalid_request_error", "file", "file_too_large",
            )
        return await call_next(request)
