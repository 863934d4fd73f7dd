"""Showing an `EvalReport` to people: a rich table, a JSON dict, and a PNG bar chart."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from openrft.eval.evaluate import EvalReport


def metric_rows(report: EvalReport) -> list[tuple[str, str]]:
    """(metric name, formatted value) pairs in display order."""
    rows = [
        ("mean reward", f"{report.mean_reward:.4f} ± {report.stderr:.4f} (s.e.)"),
        ("reward std", f"{report.std:.4f}"),
    ]
    rows += [(f"pass@{k}", f"{v:.4f}") for k, v in report.pass_at_k.items()]
    rows += [(f"top@{k}", f"{v:.4f}") for k, v in report.top_at_k.items()]
    rows += [
        ("rows × samples", f"{report.n_rows} × {report.samples_per_row} = {report.n_samples}"),
        ("grader errors", _errors_text(report)),
        ("parse errors", str(report.parse_errors)),
        ("truncated (hit max_tokens)", f"{report.truncation_rate:.1%}"),
        ("mean completion tokens", f"{report.mean_completion_tokens:.1f}"),
        ("time", f"{report.elapsed_s:.1f} s"),
    ]
    return rows


def _errors_text(report: EvalReport) -> str:
    if not report.grader_errors:
        return "0"
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(report.grader_error_codes.items()))
    return f"{report.grader_errors} ({codes})"


def report_table(report: EvalReport, title: str = "Evaluation") -> Table:
    """A two-column rich table of the summary metrics."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for name, value in metric_rows(report):
        table.add_row(name, value)
    return table


def print_report(
    report: EvalReport, console: Console | None = None, title: str = "Evaluation"
) -> None:
    """Print the summary table (to stdout unless another console is given)."""
    (console or Console()).print(report_table(report, title))


def report_json(report: EvalReport, include_rows: bool = True) -> str:
    """The report as indented JSON text."""
    return json.dumps(report.to_dict(include_rows), indent=2, ensure_ascii=False)


def write_report_json(report: EvalReport, path: str | Path, include_rows: bool = True) -> Path:
    """Write the JSON report, creating parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_json(report, include_rows) + "\n", encoding="utf-8")
    return path


def chart_values(report: EvalReport) -> dict[str, float]:
    """The bars of the chart: mean reward, pass@k and top@k (all shares in 0..1)."""
    values = {"mean reward": report.mean_reward}
    values.update({f"pass@{k}": v for k, v in report.pass_at_k.items()})
    values.update({f"top@{k}": v for k, v in report.top_at_k.items()})
    return values


def write_bar_chart(
    values: dict[str, float], path: str | Path, title: str = "Evaluation", ylabel: str = "share"
) -> Path:
    """A PNG bar chart of named values (matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(values) + 1.5), 3.5))
    try:
        bars = ax.bar(list(values), list(values.values()), color="#4C72B0")
        ax.bar_label(bars, fmt="%.2f")
        ax.set_ylim(min(0.0, *values.values()), max(1.0, *values.values()) * 1.1)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def write_report_chart(report: EvalReport, path: str | Path, title: str = "Evaluation") -> Path:
    """The report's mean reward, pass@k and top@k as a PNG bar chart."""
    return write_bar_chart(chart_values(report), path, title)

