"""Untuned vs SFT warm start vs SFT -> RFT on held-out diseases, with the tool served locally.

Why a warm start: untuned SmolLM2-135M-Instruct writes no tool call at all (docs/agentic.md),
so every RFT group scores the same and GRPO has nothing to learn from. A few SFT steps on
demonstrations (call, tool answer, gene) on *training* diseases teach the format; RFT then
trains on rewards from the final answer only. Every model is evaluated greedily on the
same held-out diseases, one episode each, and the paired differences per question get a
bootstrap 95% CI over questions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openrft.errors import InvalidInput
from openrft.eval.stats import paired_bootstrap
from openrft.examples.tool_lookup.data import (
    TOOL_NAME,
    TOOL_SCHEMA,
    answer_grader,
    demonstration_row,
    eligible_entries,
    eval_grader,
    split_entries,
    task_row,
)
from openrft.examples.tool_lookup.server import GeneLookupServer


@dataclass
class RunSettings:
    """Sizes of one run; the defaults are the worked example of docs/agentic.md."""

    model: str = "smollm2-135m-instruct"
    seed: int = 0
    n_sft: int = 32  # demonstrations for the warm start (training diseases)
    n_rft: int = 64  # RFT prompts (other training diseases)
    n_test: int = 48  # held-out diseases
    sft_epochs: int = 2
    sft_learning_rate: float = 5e-4
    rft_steps: int = 12
    rft_batch_size: int = 4
    group_size: int = 4
    rft_learning_rate: float = 1e-4
    max_tokens: int = 48  # per model turn
    max_episode_steps: int = 2  # a call, then the answer
    threads: int = 1  # torch threads (a small shared CPU machine)


def tools_system_prompt() -> str:
    """The system message the episode runner renders the tool schema into for SmolLM2."""
    from openrft.rollout.tool_format import _with_tools_in_system

    return _with_tools_in_system([], [TOOL_SCHEMA])[0]["content"]


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def evaluate_model(model: Any, rows: list[dict[str, Any]], tool_url: str,
                   settings: RunSettings) -> dict[str, Any]:
    """Greedy episodes on `rows`: per-question answer and tool-use scores, and means."""
    from openrft import evaluate
    from openrft.rollout.engine import GenerationParams

    report = evaluate(
        model, rows, eval_grader(), params=GenerationParams(max_tokens=settings.max_tokens,
                                                            temperature=0.0),
        tools=[{"name": TOOL_NAME, "server_url": tool_url}],
        max_episode_steps=settings.max_episode_steps, progress=False,
    )
    answer = [s.score for r in report.rows for s in r.samples]
    tool = [s.metadata["graders"]["tool"]["score"] for r in report.rows for s in r.samples]
    return {"accuracy": float(np.mean(answer)), "tool_use": float(np.mean(tool)),
            "answer": answer, "tool": tool,
            "outputs": [s.output_text for r in report.rows for s in r.samples],
            "elapsed_s": report.elapsed_s}


def run(out: Path, settings: RunSettings) -> dict[str, Any]:
    """The three-way comparison; writes data, models and results.json under `out`.
    Rerunning it on the same `out` with the same settings resumes after the last
    finished stage."""
    import torch

    from openrft import RFTConfig, train, train_supervised
    from openrft.examples.rare_disease.hpo_data import load_hpo
    from openrft.models.load import LoraSettings

    torch.set_num_threads(settings.threads)
    out.mkdir(parents=True, exist_ok=True)
    entries = eligible_entries(load_hpo())
    train_entries, test_entries = split_entries(
        entries, settings.n_sft + settings.n_rft, settings.n_test, seed=settings.seed)
    sft_entries, rft_entries = train_entries[:settings.n_sft], train_entries[settings.n_sft:]
    system = tools_system_prompt()
    write_jsonl(out / "sft.jsonl", [demonstration_row(e, system) for e in sft_entries])
    rft_file = write_jsonl(out / "rft.jsonl", [task_row(e) for e in rft_entries])
    test_rows = [task_row(e) for e in test_entries]
    write_jsonl(out / "test.jsonl", test_rows)
    results = _resumable(out, settings, len(entries))
    timings: dict[str, float] = results.setdefault("timings_s", {})

    def stage(name: str, work: Any) -> Any:
        start = time.perf_counter()
        value = work()
        timings[name] = time.perf_counter() - start
        return value

    with GeneLookupServer(entries) as server:  # the lookup knows every eligible disease
        if "untuned" not in results:
            results["untuned"] = stage("eval_untuned", lambda: evaluate_model(
                settings.model, test_rows, server.url, settings))
            _save(out, results)  # partial results survive an interrupted run
        sft_dir = out / "sft"
        if not (sft_dir / "openrft_sft.json").exists():  # the final model is written last
            sft_dir = stage("sft", lambda: train_supervised(
                settings.model, [demonstration_row(e, system) for e in sft_entries],
                out / "sft", epochs=settings.sft_epochs,
                learning_rate=settings.sft_learning_rate, batch_size=8, max_length=2048,
                lora=LoraSettings(), seed=settings.seed, threads=settings.threads,
                resume=True, progress=False))  # continues an interrupted SFT, else fresh
        if "sft" not in results:
            results["sft"] = stage("eval_sft", lambda: evaluate_model(
                str(sft_dir), test_rows, server.url, settings))
            _save(out, results)
        if "sft_rft" not in results:
            config = RFTConfig(
                model=str(sft_dir), training_file=str(rft_file), grader=answer_grader(),
                output_dir=str(out / "rft"), seed=settings.seed,
                tools=[{"name": TOOL_NAME, "server_url": server.url}],
                max_episode_steps=settings.max_episode_steps,
                hyperparameters={"batch_size": settings.rft_batch_size, "n_epochs": 50},
                expert={"group_size": settings.group_size, "max_tokens": settings.max_tokens,
                        "base_learning_rate": settings.rft_learning_rate,
                        "max_steps": settings.rft_steps, "preflight": False},
            )
            trained = stage("rft", lambda: train(config, resume=True))  # likewise
            results["sft_rft"] = stage("eval_sft_rft", lambda: evaluate_model(
                trained.final_model_dir, test_rows, server.url, settings))
            results["tool_calls_served"] = server.calls
    for metric in ("answer", "tool"):
        results[f"ci_{metric}"] = {
            f"{x}_minus_{y}": paired_bootstrap(results[x][metric], results[y][metric]).as_dict()
            for x, y in (("sft_rft", "sft"), ("sft_rft", "untuned"), ("sft", "untuned"))
        }
    _save(out, results)
    return results


def _resumable(out: Path, settings: RunSettings, n_eligible: int) -> dict[str, Any]:
    """The results of an interrupted run (its finished stages are kept, and the run
    resumes after them), else a fresh record. A run with other settings is refused: its
    models would be reused as if they were this run's."""
    path = out / "results.json"
    if not path.exists():
        return {"settings": vars(settings), "n_eligible": n_eligible}
    saved = json.loads(path.read_text())
    if saved.get("settings") != vars(settings):
        raise InvalidInput("--out", f"{out} holds a run with other settings; choose another "
                                    "--out to start a new one")
    return saved


def _save(out: Path, results: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2))
