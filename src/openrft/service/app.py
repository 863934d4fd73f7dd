"""`create_app(settings, db)`: the FastAPI application, built from validated settings.

No engine or model is created at import time: the database comes in as an argument
(tests pass their own), models for chat load on first use.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from openrft import __version__
from openrft.service.errors import ERROR_RESPONSES, install_error_handlers, without_422
from openrft.service.limits import UploadSizeLimit
from openrft.service.models_cache import ModelCache
from openrft.service.request_id import RequestIdMiddleware
from openrft.service.routes import chat, dashboard, files, graders, jobs, models
from openrft.service.settings import ServiceSettings
from openrft.service.store.db import Database


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
    app.add_middleware(UploadSizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestIdMiddleware)  # added last: outermost, so it sees every answer
    for module in (files, jobs, graders, models, chat, dashboard):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The served schema, built once: every operation documents OpenAI's error body."""
    if app.openapi_schema is None:
        app.openapi_schema = without_422(get_openapi(
            title=app.title, version=app.version, routes=app.routes))
    return app.openapi_schema
