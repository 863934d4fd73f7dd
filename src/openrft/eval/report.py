"""Showing evaluation and preflight reports to people: rich tables, JSON, PNG charts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from openrft.eval.evaluate import EvalReport

if TYPE_CHECKING:
    from openrft.rl.preflight import PreflightReport


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



def histogram_lines(counts: list[int], edges: list[float], width: int = 30) -> list[str]:
    """A text histogram, one line per bin: `[0.00, 0.10)  ████████  12`."""
    peak = max(counts, default=0) or 1
    lines = []
    for i, count in enumerate(counts):
        close = "]" if i == len(counts) - 1 else ")"
        bar = "█" * round(width * count / peak)
        lines.append(f"[{edges[i]:.2f}, {edges[i + 1]:.2f}{close}  {bar:<{width}}  {count}")
    return lines


def preflight_panel(report: PreflightReport) -> Group:
    """The preflight verdict, numbers, text histogram, warnings and advice for a terminal."""
    colour = {"ok": "green", "too_hard": "red", "too_easy": "yellow", "low_signal": "yellow"}
    table = Table(title="Preflight", title_justify="left")
    table.add_column("measure", style="bold")
    table.add_column("value", justify="right")
    rewards, groups = report.rewards, report.groups
    quantiles = "  ".join(f"p{round(q * 100)}={v:.2f}" for q, v in rewards.quantiles.items())
    for name, value in [
        ("verdict", f"[{colour[report.verdict]}]{report.verdict}[/]"),
        ("rows × group size", f"{report.n_rows} × {report.group_size}"),
        ("mean reward", f"{rewards.mean:.4f} ± {rewards.std:.4f} (std)"),
        ("quantiles", quantiles),
        ("pass rate", f"{report.pass_rate:.1%}"),
        ("zero-variance groups", f"{groups.zero_variance:.1%}"),
        ("all-pass / all-fail groups", f"{groups.all_pass:.1%} / {groups.all_fail:.1%}"),
        ("grader errors", f"{report.grader_error_rate:.1%}"),
        ("parse errors", f"{report.parse_error_rate:.1%}"),
        ("mean completion tokens", f"{report.mean_completion_tokens:.1f}"),
        ("truncated (hit max_tokens)", f"{report.truncation_rate:.1%}"),
    ]:
        table.add_row(name, value)
    if report.estimated_sampling_s_per_step is not None:
        total = report.estimated_sampling_s_total or 0.0
        table.add_row(
            "sampling + grading per step / run",
            f"{report.estimated_sampling_s_per_step:.1f} s / {total / 60:.1f} min",
        )
    parts: list[Any] = [table, Text("reward histogram", style="bold")]
    parts += [Text(line) for line in histogram_lines(report.histogram_counts,
                                                     report.histogram_edges)]
    parts += [Text(f"warning: {w}", style="yellow") for w in report.warnings]
    parts += [Text(f"advice: {a}") for a in report.advice]
    return Group(*parts)


def write_histogram_chart(
    counts: list[int], edges: list[float], path: str | Path, title: str = "Reward distribution"
) -> Path:
    """A PNG histogram of rewards (bars at the bin edges, matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    try:
        widths = [edges[i + 1] - edges[i] for i in range(len(counts))]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color="#4C72B0", edgecolor="white")
        ax.set_xlabel("reward")
        ax.set_ylabel("samples")
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
