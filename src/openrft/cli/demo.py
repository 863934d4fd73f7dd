"""`openrft demo`: the flagship rare-disease experiment (registered on the shared app).

A thin shell over `openrft.examples.rare_disease.demo.run_demo`; `make demo` runs
`openrft demo --out runs/demo`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openrft.cli import app
from openrft.errors import InvalidInput


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("runs/demo"),
    scale: Annotated[
        str, typer.Option("--scale", help="demo (~10 min on 2 cores) or full (hours).")
    ] = "demo",
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds 0..N-1, each a full run.")]
    = 1,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=1,
            help="Torch CPU threads. 1 (default) is robust on a busy machine: the model is "
            "too small for threads to pay, and spinning threads slow down under contention.",
        ),
    ] = 1,
) -> None:
    """Rare-disease gene ranking from HPO phenotypes: base vs SFT vs RFT vs a classical ranker."""
    from openrft.examples.rare_disease.demo import SCALES, run_demo

    if scale not in SCALES:
        raise InvalidInput("--scale", f"expected one of {', '.join(SCALES)}, got {scale!r}")
    run_demo(out, scale=scale, seeds=seeds, threads=threads)
