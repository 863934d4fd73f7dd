"""`openrft models list` and `openrft models pull NAME`: the model catalog from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from openrft.cli import app

models_app = typer.Typer(help="List and pull the catalog's pretrained models.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

ModelsDir = Annotated[
    Path | None,
    typer.Option("--models-dir", help="Models directory (default: $OPENRFT_MODELS_DIR, "
                                      "else $OPENRFT_HOME/models, else "
                                      "~/.cache/openrft/models)."),
]


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:,.0f} MB"


@models_app.command("list")
def list_command(models_dir: ModelsDir = None) -> None:
    """Catalog models and any other model in the models directory: pulled or not, size on
    disk (or download size), path and licence."""
    from openrft.models import catalog

    table = Table(title=f"Models in {catalog.models_dir(models_dir)}")
    for column in ("name", "pulled", "size", "path", "licence"):
        table.add_column(column, overflow="fold")
    for name, entry in sorted(catalog.CATALOG.items()):
        path = catalog.pulled_path(name, models_dir)
        if path is None:
            size = f"{_size(entry.source.download_bytes)} download"
            table.add_row(name, "no", size, "-", entry.licence)
        else:
            table.add_row(name, "yes", _size(catalog.directory_bytes(path)), str(path),
                          entry.licence)
    for name in catalog.local_names(models_dir):
        if name not in catalog.CATALOG:
            path = catalog.models_dir(models_dir) / name
            table.add_row(name, "local", _size(catalog.directory_bytes(path)), str(path), "?")
    Console().print(table)


@models_app.command("pull")
def pull_command(
    name: Annotated[str, typer.Argument(help="A catalog name, e.g. smollm2-135m-instruct.")],
    models_dir: ModelsDir = None,
) -> None:
    """Download, verify and convert a catalog model (once; a pulled model is kept)."""
    from openrft.models import catalog

    console = Console()
    already = catalog.pulled_path(name, models_dir)
    path = already or catalog.pull(name, models_dir, progress=True)
    state = "already pulled" if already else "pulled"
    console.print(f"{name} {state}: {path}", highlight=False, soft_wrap=True)
