"""`openrft grade` and `openrft grader validate`: try a grader on files, no model needed.

`grade` scores `samples.jsonl` line i against `rows.jsonl` line i, so a grader can be
checked on hand-written answers before any training. Every input problem is one
InvalidInput naming file:line or the grader field; `openrft.cli.main` prints it as one
line and exits 2.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from openrft.cli import app
from openrft.data.jsonl import read_jsonl_numbered, read_text_file, require_objects
from openrft.data.templates import (
    check_template_fields,
    grader_templates,
    make_sample,
    template_paths,
)
from openrft.errors import InvalidInput
from openrft.graders.base import BaseGrader, GradeResult, build_grader
from openrft.graders.schema import GraderSpec

grader_app = typer.Typer(help="Inspect grader files.", no_args_is_help=True)
app.add_typer(grader_app, name="grader")

_BATCH = 32  # rows graded between progress updates


def build_grader_file(path: Path) -> BaseGrader:
    """Load and build the grader in `path`; errors name the file and the field."""
    grader_dict = load_grader_file(path)
    try:
        return build_grader(grader_dict)
    except InvalidInput as exc:
        raise _in_file(path, exc) from None


def load_grader_file(path: Path) -> dict[str, Any]:
    """A grader JSON file (a grader object, or `{"grader": {...}}` as the API sends it)."""
    text = read_text_file(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}:{exc.lineno}", f"invalid JSON: {exc.msg}") from None
    if isinstance(value, dict) and "type" not in value and isinstance(value.get("grader"), dict):
        value = value["grader"]
    if not isinstance(value, dict):
        raise InvalidInput(str(path), "expected a JSON object holding one grader")
    return value


def _in_file(path: Path, exc: InvalidInput) -> InvalidInput:
    return InvalidInput(f"{path}: {exc.location}" if exc.location else str(path), exc.message)


def load_samples(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, sample namespace) per line: a JSON string, or {"output_text": ..., ...}."""
    samples = []
    for line, value in read_jsonl_numbered(path):
        if isinstance(value, str):
            samples.append((line, make_sample(value)))
            continue
        if not isinstance(value, dict):
            raise InvalidInput(f"{path}:{line}", "expected a JSON string or object")
        text = value.get("output_text")
        if not isinstance(text, str):
            raise InvalidInput(f"{path}:{line}", "field 'output_text' must be a string")
        extra = {key: field for key, field in value.items() if field is not None}  # null = absent
        samples.append((line, {**extra, **make_sample(text, value.get("output_json"))}))
    return samples


def _check_rows(grader: dict[str, Any], rows: list[tuple[int, dict[str, Any]]], path: Path) -> None:
    for line, row in rows:
        missing = check_template_fields(grader, row)
        if missing:
            raise InvalidInput(
                f"{path}:{line}", f"row lacks {', '.join(missing)} that the grader references"
            )


def _grade_all(
    grader: BaseGrader,
    samples: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    concurrency: int,
) -> list[GradeResult]:
    results: list[GradeResult] = []
    columns = (TextColumn("grading"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("grading", total=len(samples))
        for start in range(0, len(samples), _BATCH):
            end = start + _BATCH
            results.extend(grader.grade_many(samples[start:end], rows[start:end], concurrency))
            progress.update(task, completed=len(results))
    return results


def summarize(results: list[GradeResult]) -> dict[str, float | int]:
    """Mean/std/min/max score, error count and mean latency of a graded file."""
    scores = [result.score for result in results]
    return {
        "count": len(scores),
        "mean": statistics.fmean(scores) if scores else 0.0,
        "std": statistics.pstdev(scores) if scores else 0.0,
        "min": min(scores, default=0.0),
        "max": max(scores, default=0.0),
        "errors": sum(1 for result in results if result.errors),
        "mean_latency_s": statistics.fmean(r.latency_s for r in results) if results else 0.0,
    }


def _row_record(index: int, line: int, result: GradeResult) -> dict[str, Any]:
    return {
        "row": index,
        "line": line,
        "score": result.score,
        "errors": [{"code": e.code, "message": e.message} for e in result.errors],
        "latency_s": result.latency_s,
        "sub_scores": result.sub_scores,
        "metadata": result.metadata,
    }


def _print_table(records: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    console = Console()
    table = Table(title="grades")
    table.add_column("row", justify="right")
    table.add_column("score", justify="right")
    with_sub_scores = any(record["sub_scores"] for record in records)
    if with_sub_scores:
        table.add_column("sub-scores")
    table.add_column("errors")
    table.add_column("latency", justify="right")
    for record in records:
        cells = [str(record["row"]), f"{record['score']:.4f}"]
        if with_sub_scores:
            cells.append(", ".join(f"{k}={v:.3f}" for k, v in record["sub_scores"].items()))
        errors = "; ".join(f"{e['code']}: {e['message']}" for e in record["errors"])
        cells += [errors or "-", f"{record['latency_s'] * 1000:.1f} ms"]
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"mean {summary['mean']:.4f}  std {summary['std']:.4f}  min {summary['min']:.4f}  "
        f"max {summary['max']:.4f}  errors {summary['errors']}/{summary['count']}  "
        f"mean latency {summary['mean_latency_s'] * 1000:.1f} ms",
        highlight=False,
        soft_wrap=True,
    )


@app.command("grade")
def grade_command(
    grader_path: Annotated[Path, typer.Option("--grader", help="Grader JSON file.")],
    data_path: Annotated[Path, typer.Option("--data", help="Dataset rows (JSONL).")],
    samples_path: Annotated[
        Path, typer.Option("--samples", help="One model answer per row (JSONL).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Samples graded at once.")] = 8,
) -> None:
    """Grade samples.jsonl line i against rows.jsonl line i and summarize the scores."""
    grader = build_grader_file(grader_path)
    try:
        numbered_rows = read_jsonl_numbered(data_path)
        rows = require_objects(numbered_rows, str(data_path))
        samples = load_samples(samples_path)
        if len(samples) != len(rows):
            raise InvalidInput(
                str(samples_path), f"{len(samples)} samples but {len(rows)} rows in {data_path}"
            )
        _check_rows(grader.spec.model_dump(), numbered_rows, data_path)
        results = _grade_all(grader, [s for _, s in samples], rows, concurrency)
    finally:
        grader.close()
    records = [
        _row_record(i, line, result)
        for i, ((line, _), result) in enumerate(zip(numbered_rows, results, strict=True), 1)
    ]
    summary = summarize(results)
    if as_json:
        typer.echo(json.dumps({"rows": records, "summary": summary}, default=str))
    else:
        _print_table(records, summary)


def describe_grader(spec: GraderSpec) -> list[str]:
    """Lines a person reads to confirm what a grader will do."""
    dumped = spec.model_dump()
    lines = [f"{spec.type} grader {spec.name!r}"]
    if spec.type == "multi":
        lines.append(f"calculate_output: {dumped['calculate_output']}")
        for key, sub in dumped["graders"].items():
            lines.append(f"  {key}: {sub['type']} grader {sub['name']!r}")
    elif spec.type == "string_check":
        lines.append(f"operation: {dumped['operation']}")
    elif spec.type == "text_similarity":
        metric, threshold = dumped["evaluation_metric"], dumped.get("pass_threshold")
        lines.append(f"evaluation_metric: {metric}, pass_threshold: {threshold}")
    elif spec.type in ("score_model", "label_model"):
        lines.append(f"model: {dumped['model']}")
    paths = sorted({p.dotted for _, t in grader_templates(dumped) for p in template_paths(t)})
    if paths:
        lines.append("references: " + ", ".join(paths))
    return lines


@grader_app.command("validate")
def validate_command(
    grader_path: Annotated[Path, typer.Argument(help="Grader JSON file.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the normalized grader as JSON.")
    ] = False,
) -> None:
    """Check a grader file fully (fields, templates, formula, code) without grading."""
    grader = build_grader_file(grader_path)
    grader.close()
    if as_json:
        typer.echo(json.dumps({"grader": grader.spec.model_dump(exclude_none=True)}))
        return
    console = Console(highlight=False)
    console.print(f"[bold green]OK[/] {grader_path}")
    for line in describe_grader(grader.spec):
        console.print(f"  {line}", markup=False)
