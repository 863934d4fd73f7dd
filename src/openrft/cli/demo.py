"""`openrft demo`: the flagship rare-disease experiment (registered on the shared app).

A thin shell over the two acts: with `--model` the real pretrained model reads case
reports (`rare_disease.report_demo`; `--task findings`: it lists the present findings and
the classical ranker ranks the genes, `--task candidates`: it re-ranks a pipeline's
candidate genes); without it, the from-scratch act (`rare_disease.demo.run_demo`).
`make demo` runs the real model's shortened findings act.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openrft.cli import app
from openrft.errors import InvalidInput

ACTS = ("short", "full")


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("runs/demo"),
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A pretrained chat model (catalog name or directory, e.g. "
            "smollm2-135m-instruct): run the case-report act on it. Without it: the "
            "from-scratch act.",
        ),
    ] = None,
    act: Annotated[
        str, typer.Option("--act", help="With --model: short (minutes) or full (hours).")
    ] = "short",
    task: Annotated[
        str,
        typer.Option(
            "--task",
            help="With --model: findings (the model lists the report's present findings, "
            "hypergeom_d ranks every gene) or candidates (the model re-ranks 5 candidates).",
        ),
    ] = "findings",
    scale: Annotated[
        str, typer.Option("--scale", help="From-scratch act: demo (~10 min) or full (hours).")
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
    """Rare-disease gene ranking: base vs SFT vs RFT vs classical rankers, with statistics."""
    if model is not None:
        from openrft.examples.rare_disease.report_act import TASKS
        from openrft.examples.rare_disease.report_demo import act_settings, run_report_demo

        if act not in ACTS:
            raise InvalidInput("--act", f"expected one of {', '.join(ACTS)}, got {act!r}")
        if task not in TASKS:
            raise InvalidInput("--task", f"expected one of {', '.join(TASKS)}, got {task!r}")
        run_report_demo(out, act_settings(act, model, task), seeds=seeds, threads=threads,
                        act=act)
        return
    from openrft.examples.rare_disease.demo import SCALES, run_demo

    if scale not in SCALES:
        raise InvalidInput("--scale", f"expected one of {', '.join(SCALES)}, got {scale!r}")
    run_demo(out, scale=scale, seeds=seeds, threads=threads)
