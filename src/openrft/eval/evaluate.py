"""`evaluate(model, rows, grader)`: the training path without the update.

Sample every row through a `RolloutEngine` (the only thing that generates), grade the
samples with `grade_batch`, and summarise: mean reward, pass@k, top@k, error counts. The
trainer's validation, `openrft eval`, the preflight check and the service share this path.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from openrft.data.dataset import Dataset, load_dataset, validate_row
from openrft.data.templates import check_template_fields
from openrft.errors import InvalidInput
from openrft.eval.metrics import (
    DEFAULT_PASS_THRESHOLD,
    default_pass_ks,
    mean_pass_at_k,
    summarize_rewards,
    top_at_k,
)
from openrft.graders.base import BaseGrader, ErrorFlag, GradeResult, build_grader, parse_grader
from openrft.graders.schema import GraderSpec
from openrft.rollout.engine import GenerationParams, Messages, RolloutEngine, Sample
from openrft.rollout.grading import grade_samples

TOP_KS = (1, 5)  # top@1, top@5 (plus top@max) as in OpenAI's rare-disease demo


@dataclass
class SampleResult:
    """One graded completion."""

    output_text: str
    score: float
    reasoning: str = ""
    finish_reason: str = "stop"  # "length" when max_tokens cut it off
    completion_tokens: int = 0
    parse_error: str | None = None  # why output_json could not be parsed (structured output)
    errors: list[ErrorFlag] = field(default_factory=list)  # grader errors (score is then 0)
    rank: int | None = None  # the true answer's 1-based rank the grader reported, if any
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class RowResult:
    """All samples of one dataset row."""

    index: int  # position in the evaluated rows
    messages: Messages  # the prompt the model saw
    samples: list[SampleResult]

    @property
    def scores(self) -> list[float]:
        return [s.score for s in self.samples]


@dataclass
class EvalReport:
    """Summary metrics plus every graded sample."""

    mean_reward: float
    std: float  # over all samples (ddof=1)
    stderr: float  # standard error of mean_reward, over rows
    n_rows: int
    n_samples: int
    samples_per_row: int
    pass_threshold: float
    pass_at_k: dict[int, float]  # k -> unbiased pass@k, for k <= samples_per_row
    top_at_k: dict[int | str, float]  # 1, 5, "max" -> share; empty when no rank is reported
    grader_errors: int  # samples the grader could not score (scored 0)
    grader_error_codes: dict[str, int]  # OpenAI error flag -> count
    parse_errors: int  # samples whose structured output did not parse
    truncation_rate: float  # share of samples that hit max_tokens
    mean_completion_tokens: float
    elapsed_s: float  # sampling + grading, model loading excluded
    rows: list[RowResult] = field(default_factory=list)

    def to_dict(self, include_rows: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (keys of pass_at_k/top_at_k become strings)."""
        data = asdict(self)
        data["pass_at_k"] = {str(k): v for k, v in self.pass_at_k.items()}
        data["top_at_k"] = {str(k): v for k, v in self.top_at_k.items()}
        if not include_rows:
            data.pop("rows")
        return data


def evaluate(
    model: Any,
    rows: Dataset | Sequence[dict[str, Any]] | str | Path,
    grader: dict[str, Any] | GraderSpec | BaseGrader,
    *,
    samples_per_row: int = 1,
    params: GenerationParams | None = None,
    engine: RolloutEngine | None = None,
    batch_size: int = 8,
    pass_threshold: float | None = None,
    progress: bool = True,
    tools: list[dict[str, Any]] | None = None,
    max_episode_steps: int = 10,
) -> EvalReport:
    """Sample `samples_per_row` completions per row, grade them and summarise.

    `model` is a directory, a hub id, a `LoadedModel` or a `(model, tokenizer)` pair; it is
    ignored when an `engine` is given (the trainer passes its own). `params=None` samples
    greedily for one sample per row and at temperature 1.0 for several (pass@k needs
    diversity). `rows` are OpenAI RFT rows (`messages` plus reference fields), a `Dataset`
    or a JSONL path. `pass_threshold=None` takes the grader's own (see `score_bounds`).
    `tools` (`[{name, server_url, headers}]`) runs episodes of up to `max_episode_steps`
    model turns as training does (docs/agentic.md); rows with `tools` get them rendered
    and their calls in `sample.output_tools` either way.
    """
    if samples_per_row < 1:
        raise InvalidInput("samples_per_row", f"must be >= 1, got {samples_per_row}")
    if batch_size < 1:
        raise InvalidInput("batch_size", f"must be >= 1, got {batch_size}")
    if pass_threshold is None:  # also validates a grader dict before any model loads
        pass_threshold = score_bounds(grader)[1]
    dataset = load_rows(rows, grader)
    params = params or default_params(samples_per_row)
    engine = engine or engine_for(model)
    from openrft.rollout.episodes import make_episode_runner

    episodes = make_episode_runner(engine, getattr(engine, "tokenizer", None), tools,
                                   max_episode_steps, any(r.get("tools") for r in dataset.rows))
    start = time.perf_counter()  # sampling and grading only, not model loading
    try:
        results = generate_and_grade(engine, dataset, grader, samples_per_row, params,
                                     batch_size=batch_size, progress=progress,
                                     episodes=episodes)
    finally:
        if episodes is not None:
            episodes.close()
    return summarize(results, samples_per_row, pass_threshold, time.perf_counter() - start)


def score_bounds(grader: dict[str, Any] | GraderSpec | BaseGrader) -> tuple[float, float]:
    """(fail floor, pass threshold) of a grader: what "scored nothing" and "passed" mean.

    The pass threshold is the grader's own `pass_threshold` (text_similarity, score_model)
    when set, else full marks: the top of a score_model's `range`, 1.0 otherwise. The
    floor is the bottom of a score_model's range, 0.0 otherwise.
    """
    spec = grader.spec if isinstance(grader, BaseGrader) else parse_grader(grader)
    low, high = getattr(spec, "range", None) or (0.0, DEFAULT_PASS_THRESHOLD)
    threshold = getattr(spec, "pass_threshold", None)
    return float(low), float(high if threshold is None else threshold)


def default_params(samples_per_row: int) -> GenerationParams:
    """Greedy for a single sample, temperature 1.0 when several samples must differ."""
    return GenerationParams(temperature=0.0 if samples_per_row == 1 else 1.0)


def engine_for(model: Any) -> RolloutEngine:
    """A rollout engine for a path/hub id, a `LoadedModel` or a `(model, tokenizer)` pair."""
    from openrft.rollout import make_engine

    if isinstance(model, str | Path):
        from openrft.models.load import load_model

        loaded = load_model(str(model), trainable=False)
        return make_engine(loaded.model, loaded.tokenizer)
    if isinstance(model, tuple) and len(model) == 2:
        return make_engine(model[0], model[1])
    if hasattr(model, "model") and hasattr(model, "tokenizer"):
        return make_engine(model.model, model.tokenizer)
    raise InvalidInput("model", f"expected a path, hub id or loaded model, got {type(model)!r}")


def load_rows(
    rows: Dataset | Sequence[dict[str, Any]] | str | Path,
    grader: dict[str, Any] | GraderSpec | BaseGrader | None = None,
) -> Dataset:
    """Validated rows (messages ending with a user turn, plus reference fields).

    A path is read with `load_dataset` (errors name `file:line`); in-memory rows are
    checked the same way with `rows[i]` as location. With a grader given as a dict, rows
    lacking a field its `{{ item.x }}` templates use are rejected before any generation.
    """
    if isinstance(rows, Dataset):
        return rows
    grader_dict = grader if isinstance(grader, dict) else None
    if isinstance(rows, str | Path):
        return load_dataset(rows, grader_dict)
    values = list(rows)
    if not values:
        raise InvalidInput("rows", "no rows to evaluate")
    for i, row in enumerate(values):
        if not isinstance(row, dict):
            raise InvalidInput(f"rows[{i}]", "expected a JSON object")
        validate_row(row, f"rows[{i}]")
        missing = check_template_fields(grader_dict, row) if grader_dict is not None else []
        if missing:
            raise InvalidInput(f"rows[{i}]: {missing[0]}", "the grader uses it; the row lacks it")
    return Dataset(source="rows", rows=values, line_numbers=list(range(len(values))))


def generate_and_grade(
    engine: RolloutEngine,
    dataset: Dataset,
    grader: dict[str, Any] | GraderSpec | BaseGrader,
    n: int,
    params: GenerationParams,
    *,
    batch_size: int = 8,
    progress: bool = True,
    episodes: Any = None,
) -> list[RowResult]:
    """Generate `n` samples per row in batches of `batch_size` rows and grade each batch
    (as episodes when an `EpisodeRunner` is given: rows with tools, tool servers)."""
    built = grader if isinstance(grader, BaseGrader) else build_grader(grader)
    results: list[RowResult] = []
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task("evaluating", total=len(dataset))
            for start in range(0, len(dataset), batch_size):
                batch = dataset.rows[start : start + batch_size]
                prompts = [dataset.prompt(i) for i in range(start, start + len(batch))]
                if episodes is not None:
                    tools = [row.get("tools") for row in batch]
                    samples = episodes.generate(prompts, tools, n, params)
                else:
                    samples = engine.generate(prompts, n, params)
                if len(samples) != len(batch) * n:
                    wanted = len(batch) * n
                    raise RuntimeError(f"engine returned {len(samples)} samples, not {wanted}")
                graded = grade_samples(built.grade_many, samples, batch)
                results.extend(_row_results(start, prompts, samples, graded, n))
                bar.advance(task, len(batch))
    finally:
        if built is not grader:
            built.close()
    return results


def _row_results(
    offset: int,
    prompts: list[Messages],
    samples: list[Sample],
    graded: list[GradeResult],
    n: int,
) -> list[RowResult]:
    """Group prompt-major samples and their grades into one RowResult per prompt."""
    rows = []
    for i, prompt in enumerate(prompts):
        pairs = zip(samples[i * n : (i + 1) * n], graded[i * n : (i + 1) * n], strict=True)
        rows.append(RowResult(offset + i, prompt, [_sample_result(s, g) for s, g in pairs]))
    return rows


def _sample_result(sample: Sample, grade: GradeResult) -> SampleResult:
    return SampleResult(
        output_text=sample.output_text,
        score=grade.score,
        reasoning=sample.reasoning,
        finish_reason=sample.finish_reason,
        completion_tokens=len(sample.completion_ids),
        parse_error=sample.parse_error,
        errors=list(grade.errors),
        rank=_normalised_rank(find_rank(grade.metadata)[1]),
        metadata=dict(grade.metadata),
    )


def find_rank(metadata: dict[str, Any]) -> tuple[bool, Any]:
    """(reported?, value) of `metadata["rank"]`, looking inside a multi grader's
    sub-graders (`metadata["graders"][name]["metadata"]`) in order when not at the top."""
    if "rank" in metadata:
        return True, metadata["rank"]
    graders = metadata.get("graders")
    for detail in graders.values() if isinstance(graders, dict) else ():
        inner = detail.get("metadata") if isinstance(detail, dict) else None
        found = find_rank(inner) if isinstance(inner, dict) else (False, None)
        if found[0]:
            return found
    return False, None


def _normalised_rank(rank: Any) -> int | None:
    """A 1-based rank as an int; None when absent, 0, negative or not a number."""
    if isinstance(rank, bool) or not isinstance(rank, int | float) or rank < 1:
        return None
    return int(rank)


def summarize(
    rows: list[RowResult],
    samples_per_row: int,
    pass_threshold: float = DEFAULT_PASS_THRESHOLD,
    elapsed_s: float = 0.0,
) -> EvalReport:
    """The report for graded rows: metrics computed from the per-sample scores only."""
    scores = [row.scores for row in rows]
    samples = [s for row in rows for s in row.samples]
    rewards = summarize_rewards(scores, quantiles=())
    reports_rank = any(find_rank(s.metadata)[0] for s in samples)
    codes = Counter(error.code for s in samples for error in s.errors)
    n = max(len(samples), 1)
    return EvalReport(
        mean_reward=rewards.mean,
        std=rewards.std,
        stderr=rewards.stderr,
        n_rows=len(rows),
        n_samples=len(samples),
        samples_per_row=samples_per_row,
        pass_threshold=pass_threshold,
        pass_at_k=mean_pass_at_k(scores, default_pass_ks(samples_per_row), pass_threshold),
        top_at_k=top_at_k([[s.rank for s in row.samples] for row in rows], TOP_KS)
        if reports_rank
        else {},
        grader_errors=sum(1 for s in samples if s.errors),
        grader_error_codes=dict(codes),
        parse_errors=sum(1 for s in samples if s.parse_error),
        truncation_rate=sum(s.finish_reason == "length" for s in samples) / n,
        mean_completion_tokens=sum(s.completion_tokens for s in samples) / n,
        elapsed_s=elapsed_s,
        rows=rows,
    )


def progress_bar(enabled: bool) -> Progress:
    """A rich progress bar on stderr (so `--json` output on stdout stays clean)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )
