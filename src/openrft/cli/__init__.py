"""The `openrft` command line: a thin typer shell over library calls.

Each sub-module registers its commands on `app`; errors derived from OpenRFTError are
printed as one line and exit with code 2, never as a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from openrft.errors import OpenRFTError

app = typer.Typer(
    name="openrft",
    help="OpenRFT: reinforcement fine-tuning of language models with OpenAI-compatible graders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


@app.callback()
def _root(
    models_dir: Annotated[
        Path | None,
        typer.Option("--models-dir", help="Where catalog models are pulled and found "
                                          "(default: $OPENRFT_MODELS_DIR, else "
                                          "$OPENRFT_HOME/models, else "
                                          "~/.cache/openrft/models)."),
    ] = None,
) -> None:
    """OpenRFT: reinforcement fine-tuning with OpenAI-compatible graders."""
    if models_dir is not None:  # the environment carries it to every library call and child
        from openrft.models.catalog import MODELS_DIR_ENV

        os.environ[MODELS_DIR_ENV] = str(models_dir.expanduser().resolve())



@app.command()
def version() -> None:
    """Print the OpenRFT version."""
    from openrft import __version__

    Console().print(__version__)


# Command modules register themselves on `app` when imported.
from openrft.cli import demo as _demo  # noqa: E402,F401
from openrft.cli import evaluate as _evaluate  # noqa: E402,F401
from openrft.cli import grade as _grade  # noqa: E402,F401
from openrft.cli import models as _models  # noqa: E402,F401
from openrft.cli import serve as _serve  # noqa: E402,F401
from openrft.cli import train as _train  # noqa: E402,F401


def main() -> None:
    """Entry point: run the app, turning OpenRFT errors into one line and exit code 2."""
    try:
        app()
    except OpenRFTError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
