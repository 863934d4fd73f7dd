"""`openrft serve`, `openrft worker` and `openrft keys create` (registered on the shared app).

`serve` runs the HTTP API (uvicorn) and, with `--workers N`, N worker processes that
share its data directory; `worker` starts one more worker against the same store.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from openrft.cli import app

if TYPE_CHECKING:  # the service (fastapi, sqlalchemy) loads only when a command runs
    from openrft.service.settings import ServiceSettings

keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

DataDir = Annotated[Path, typer.Option("--data-dir", help="Store, uploaded files and job runs.")]
StaleAfter = Annotated[
    float,
    typer.Option("--stale-after-s", min=0.1,
                 help="Seconds without heartbeat before another worker takes a job over."),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)."),
]
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address",
                 help="Run each job as a Ray job on this cluster (its dashboard address, "
                      "e.g. http://head:8265); see docs/scaling.md."),
]


def _settings(data_dir: Path, database_url: str | None, **extra: Any) -> ServiceSettings:
    from openrft.service.settings import ServiceSettings

    return ServiceSettings(data_dir=data_dir, database_url=database_url, **extra)


def _worker_command(data_dir: Path, database_url: str | None, stale_after_s: float,
                    ray_address: str | None = None) -> list[str]:
    command = [sys.executable, "-c", "from openrft.cli import main; main()", "worker",
               "--data-dir", str(data_dir), "--stale-after-s", str(stale_after_s)]
    command += ["--ray-address", ray_address] if ray_address else []
    return command + (["--database-url", database_url] if database_url else [])


@app.command()
def serve(
    data_dir: DataDir = Path("openrft-data"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Worker processes.")] = 1,
    database_url: DatabaseUrl = None,
    max_upload_mb: Annotated[int, typer.Option(min=1, help="Upload limit, MB.")] = 512,
    stale_after_s: StaleAfter = 15.0,
    ray_address: RayAddress = None,
) -> None:
    """Run the OpenAI-compatible API (and N training workers) on one machine."""
    import uvicorn

    from openrft.service.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = _settings(data_dir, database_url, max_upload_bytes=max_upload_mb * 1024 * 1024,
                         stale_after_s=stale_after_s)
    application = create_app(settings)  # creates the data dir and tables before workers start
    command = _worker_command(settings.data_dir, database_url, stale_after_s, ray_address)
    children = [subprocess.Popen(command) for _ in range(workers)]
    try:
        uvicorn.run(application, host=host, port=port, log_level="info")
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=30)  # a worker finishes its step and checkpoints
            except subprocess.TimeoutExpired:
                child.kill()


@app.command()
def worker(
    data_dir: DataDir = Path("openrft-data"),
    database_url: DatabaseUrl = None,
    stale_after_s: StaleAfter = 15.0,
    ray_address: RayAddress = None,
) -> None:
    """Start one training worker on the store in DATA_DIR."""
    from openrft.service.ray_jobs import RayJobRunner
    from openrft.service.training import run_training
    from openrft.service.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    job_worker = Worker(_settings(data_dir, database_url, stale_after_s=stale_after_s,
                                  heartbeat_interval_s=min(2.0, stale_after_s / 3)),
                        train_fn=RayJobRunner(ray_address) if ray_address else run_training)
    signal.signal(signal.SIGTERM, lambda *_: job_worker.stop_requested.set())
    job_worker.run_forever()


@keys_app.command("create")
def keys_create(
    project: Annotated[str, typer.Option("--project", help="Project the key acts for.")],
    data_dir: DataDir = Path("openrft-data"),
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API key for PROJECT; the key is printed alone on the last line."""
    from openrft.service.auth import create_api_key
    from openrft.service.store.db import Database

    settings = _settings(data_dir, database_url)
    settings.prepare()
    db = Database(settings.db_url)
    db.create_tables()
    with db.session() as session:
        key = create_api_key(session, project)
    console = Console()
    console.print(f"API key for project [bold]{project}[/] (shown once; stored hashed):")
    console.print(key, highlight=False, soft_wrap=True)
