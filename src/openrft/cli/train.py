"""`openrft train config.yaml [--resume] [--output-dir DIR]`: a rich shell over `train()`.

Everything about training lives in `openrft.rl.trainer.train`; this command only loads the
config, shows a progress bar with the live reward and KL (and the kinds of training-health
findings so far, each printed when it fires), and says where the run directory, the
final model and the reward chart are. Bad input is one line, exit 2
(`openrft.cli.main`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from openrft.cli import app
from openrft.rl.progress import ProgressReporter


@app.command("train")
def train_command(
    config: Annotated[Path, typer.Argument(help="YAML config (see docs/training.md).")],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint in output_dir.")
    ] = False,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Run directory (overrides the config).")
    ] = None,
) -> None:
    """Reinforcement fine-tune a model with a grader (GRPO)."""
    from transformers.utils import logging as hf_logging

    from openrft.rl.config import load_config
    from openrft.rl.trainer import train

    hf_logging.disable_progress_bar()  # one progress bar: ours, not per save/load bars
    rft_config = load_config(config)
    if output_dir is not None:
        rft_config = rft_config.model_copy(update={"output_dir": str(output_dir)})
    console = Console()
    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    progress = Progress(*columns, console=console)
    try:
        result = train(rft_config, ProgressReporter(progress), resume=resume)
    finally:
        progress.stop()
    run_dir = Path(result.output_dir)
    if result.stopped:
        console.print(f"Training {result.stopped} after step {result.steps}: {run_dir}")
        return
    console.print(f"Run directory: {run_dir}")
    console.print(f"Final model:   {result.final_model_dir}")
    console.print(f"Reward chart:  {run_dir / 'rewards.png'}")
    if result.full_valid_mean_reward is not None:
        console.print(f"Full validation mean reward: {result.full_valid_mean_reward:.4f}")
    if result.findings:
        kinds = ", ".join(f"{f['kind']} (step {f['step']})" for f in result.findings)
        console.print(f"Training health: {kinds}; see result.json and "
                      "docs/training_health.md")
