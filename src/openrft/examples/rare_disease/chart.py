"""The comparison chart: top@1 / top@5 / top@max per arm, mean with the spread over seeds."""

from __future__ import annotations

from pathlib import Path

METRICS = ("top@1", "top@5", "top@max")
LABELS = {
    "base": "base (untuned)",
    "sft": "SFT",
    "rft": "RFT",
    "sft_rft": "SFT then RFT",
    "classical": "hypergeom_d (classical)",
}


def draw_chart(
    summary: dict[str, dict[str, tuple[float, float]]], path: Path, title: str,
    labels: dict[str, str] | None = None,
) -> Path:
    """Grouped bars: one group per metric, one bar per arm; error bars = std over seeds.

    `summary[arm][metric] = (mean, std)` with values in [0, 1].
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    labels = labels or LABELS
    arms = [a for a in labels if a in summary]
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=120)
    for i, arm in enumerate(arms):
        xs = [m + (i - (len(arms) - 1) / 2) * width for m in range(len(METRICS))]
        means = [100 * summary[arm][metric][0] for metric in METRICS]
        spreads = [100 * summary[arm][metric][1] for metric in METRICS]
        hatch = "//" if arm in ("classical", "pipeline", "upper_bound") else None
        ax.bar(xs, means, width, yerr=spreads, capsize=3, label=labels[arm], hatch=hatch)
    ax.set_xticks(range(len(METRICS)), METRICS)
    ax.set_ylabel("held-out cases (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
