"""`openrft serve`, `openrft worker` and `openrft keys create` (registered on the shared app).

`serve` runs the HTTP API (uvicorn) and, with `--workers N`, N worker processes that
share its data directory; `worker` starts one more worker against the same store.
"""

from __future__ import annotations

import logging
import signal
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
ModelRoots = Annotated[
    list[Path] | None,
    typer.Option("--model-root", help="A directory of model directories that jobs and chat "
                                      "may name (repeatable). Catalog models need none."),
]
ModelAliases = Annotated[
    list[str] | None,
    typer.Option("--model-alias", help="NAME=MODEL: serve MODEL (a catalog or root model) "
                                       "when a client names NAME, e.g. "
                                       "o4-mini-2025-04-16=smollm2-135m-instruct (repeatable)."),
]
AliasesFile = Annotated[
    Path | None,
    typer.Option("--model-aliases-file", help="A JSON or YAML mapping NAME: MODEL of aliases."),
]
OutboundHosts = Annotated[
    list[str] | None,
    typer.Option("--outbound-host", help="A host that jobs' tool servers and endpoint graders "
                                         "may be on ('*.example.com' for subdomains; "
                                         "repeatable). None given: any host."),
]
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address",
                 help="Run each job as a Ray job on this cluster (its dashboard address, "
                      "e.g. http://head:8265); see docs/scaling.md."),
]


def _settings(data_dir: Path, database_url: str | None, **extra: Any) -> ServiceSettings:
    """Validated settings; a bad option (a missing model root, an unknown alias target)
    is one error line, not a pydantic traceback."""
    from pydantic import ValidationError

    from openrft.errors import InvalidInput
    from openrft.service.settings import ServiceSettings

    try:
        return ServiceSettings(data_dir=data_dir, database_url=database_url, **extra)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise InvalidInput(where, first["msg"].removeprefix("Value error, ")) from None


def _model_access(roots: list[Path] | None, aliases: list[str] | None,
                  aliases_file: Path | None) -> dict[str, Any]:
    """Settings fields from the model options; a malformed alias is one error line."""
    from openrft.errors import InvalidInput

    mapping: dict[str, str] = {}
    if aliases_file is not None:
        mapping.update(_read_aliases_file(aliases_file))
    for item in aliases or []:
        alias, sep, target = item.partition("=")
        if not sep or not alias.strip() or not target.strip():
            raise InvalidInput("--model-alias", f"expected NAME=MODEL, got {item!r}")
        mapping[alias.strip()] = target.strip()
    return {"model_roots": tuple(roots or ()), "model_aliases": mapping}


def _read_aliases_file(path: Path) -> dict[str, str]:
    import yaml

    from openrft.data.jsonl import read_text_file
    from openrft.errors import InvalidInput

    try:
        data = yaml.safe_load(read_text_file(path))  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise InvalidInput(str(path), f"invalid JSON/YAML: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise InvalidInput(str(path), "expected a mapping of alias names to model names")
    return data


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
    model_root: ModelRoots = None,
    model_alias: ModelAliases = None,
    model_aliases_file: AliasesFile = None,
    ray_address: RayAddress = None,
    outbound_host: OutboundHosts = None,
) -> None:
    """Run the OpenAI-compatible API (and N training workers) on one machine.

    Jobs and chat may name catalog models (pulled on first use), the project's ft:
    models, models under a --model-root, and --model-alias names; nothing else."""
    import uvicorn

    from openrft.service.app import create_app
    from openrft.service.processes import run_until_stopped, start_workers, stop_workers

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = _settings(data_dir, database_url, max_upload_bytes=max_upload_mb * 1024 * 1024,
                         stale_after_s=stale_after_s, outbound_hosts=tuple(outbound_host or ()),
                         **_model_access(model_root, model_alias, model_aliases_file))
    application = create_app(settings)  # creates the data dir and tables before workers start
    command = _worker_command(settings.data_dir, database_url, stale_after_s, ray_address)
    children = start_workers(command, workers)
    try:
        run_until_stopped(uvicorn.Server(uvicorn.Config(application, host=host, port=port,
                                                        log_level="info")))
    finally:
        stop_workers(children)  # each finishes its step and checkpoints, SIGKILL after 30 s


@app.command()
def worker(
    data_dir: DataDir = Path("openrft-data"),
    database_url: DatabaseUrl = None,
    stale_after_s: StaleAfter = 15.0,
    ray_address: RayAddress = None,
    parent_pid: Annotated[int | None, typer.Option(
        "--parent-pid", hidden=True, help="Stop when this parent process dies (set by serve).",
    )] = None,
) -> None:
    """Start one training worker on the store in DATA_DIR.

    SIGTERM, SIGINT and SIGHUP stop it gracefully: a running job is checkpointed and
    re-queued.
    """
    from openrft.service.processes import STOP_SIGNALS, stop_when_parent_dies
    from openrft.service.ray_jobs import RayJobRunner
    from openrft.service.training import run_training
    from openrft.service.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    job_worker = Worker(_settings(data_dir, database_url, stale_after_s=stale_after_s,
                                  heartbeat_interval_s=min(2.0, stale_after_s / 3)),
                        train_fn=RayJobRunner(ray_address) if ray_address else run_training)
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, lambda *_: job_worker.stop_requested.set())
    if parent_pid is not None:
        stop_when_parent_dies(parent_pid, job_worker.stop_requested)
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
