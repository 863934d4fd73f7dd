"""Service fixtures: a live uvicorn server on loopback, API keys, and openai SDK clients."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import uvicorn

from openrft.service.app import create_app
from openrft.service.auth import create_api_key
from openrft.service.settings import ServiceSettings
from openrft.service.store.db import Database
from openrft.service.worker import Worker


@dataclass
class LiveServer:
    base_url: str
    settings: ServiceSettings
    db: Database
    server: uvicorn.Server
    thread: threading.Thread

    def key(self, project: str) -> str:
        with self.db.session() as session:
            return create_api_key(session, project)

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=key, max_retries=0,
                             timeout=60)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(settings: ServiceSettings) -> LiveServer:
    """uvicorn in a thread on 127.0.0.1 with an ephemeral port; returns once it accepts."""
    db = Database(settings.db_url)
    app = create_app(settings, db)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return LiveServer(f"http://127.0.0.1:{port}", settings, db, server, thread)


def database_url_for_tests() -> str | None:
    """OPENRFT_TEST_DATABASE_URL (e.g. postgresql+psycopg://...) runs the server tests on
    that database instead of SQLite; its public schema is emptied first."""
    url = os.environ.get("OPENRFT_TEST_DATABASE_URL")
    if url:
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    return url


@pytest.fixture
def make_settings(tmp_path: Path):
    """Factory: `make_settings(**settings)` on `tmp_path`, on the test database when
    OPENRFT_TEST_DATABASE_URL is set (emptied once per test), else SQLite."""
    database_url = database_url_for_tests()

    def factory(**overrides: object) -> ServiceSettings:
        if database_url:
            overrides.setdefault("database_url", database_url)
        settings = ServiceSettings(data_dir=tmp_path, **overrides)
        settings.prepare()
        return settings

    return factory


@pytest.fixture
def make_server(tmp_path: Path, tiny_model_dir: Path) -> Iterator:
    """Factory: `make_server(**settings)` starts a server on `tmp_path/data` (stopped after).

    The tiny model's parent is a model root (`--model-root`), so jobs may name the tiny
    model by its path, as an admin-provided model."""
    started: list[LiveServer] = []
    database_url = database_url_for_tests()

    def factory(**overrides: object) -> LiveServer:
        if database_url:
            overrides.setdefault("database_url", database_url)
        overrides.setdefault("model_roots", (tiny_model_dir.parent,))
        settings = ServiceSettings(data_dir=tmp_path / "data", **overrides)
        live = start_server(settings)
        started.append(live)
        return live

    yield factory
    for live in started:
        live.stop()


@pytest.fixture
def worker(live: LiveServer) -> Iterator[Worker]:
    """A worker on the live server's store, in a thread, stopped at teardown."""
    job_worker = Worker(live.settings)
    thread = threading.Thread(target=job_worker.run_forever, daemon=True)
    thread.start()
    yield job_worker
    job_worker.stop_requested.set()
    thread.join(timeout=120)


@pytest.fixture
def live(make_server) -> LiveServer:
    return make_server(max_upload_bytes=64 * 1024)


@pytest.fixture
def client(live: LiveServer) -> openai.OpenAI:
    return live.client(live.key("alpha"))
