"""`create_app(settings, db)`: the FastAPI application, built from validated settings.

No engine or model is created at import time: the database comes in as an argument
(tests pass their own), models for chat load on first use.
"""

from __future__ import annotations

from fastapi import FastAPI

from openrft import __version__
from openrft.service.errors import install_error_handlers
from openrft.service.limits import UploadSizeLimit
from openrft.service.models_cache import ModelCache
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
    for module in (files, jobs, graders, models, chat, dashboard):
        app.include_router(module.router)
    return app
