"""The run directory: what `train()` always leaves on disk, whoever else is listening.

    output_dir/
      config.yaml        the resolved config (every "auto" replaced by its value)
      metrics.jsonl      one row per optimizer step (see docs/training.md for the glossary)
      samples.jsonl      sampled completions with scores, keep_samples per step
      events.jsonl       human-readable events (level, message, data)
      checkpoints/step-N/  resumable checkpoints (the keep_checkpoints best by validation reward)
      final/             the trained model (adapter or full), loadable by load_model
      result.json        final_model_dir, full_valid_mean_reward, steps, status
      rewards.png        train reward mean +- std and validation reward per step
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from openrft.rl.reporter import StopRequest

METRICS, SAMPLES, EVENTS = "metrics.jsonl", "samples.jsonl", "events.jsonl"
CONFIG, RESULT, CHART = "config.yaml", "result.json", "rewards.png"


class RunDirReporter:
    """A Reporter that writes metrics, samples, events, config, result and the chart."""

    def __init__(self, output_dir: str | Path) -> None:
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def on_start(self, total_steps: int, config: dict[str, Any]) -> None:
        (self.dir / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))

    def on_step(self, metrics: dict[str, Any]) -> None:
        _append_jsonl(self.dir / METRICS, [metrics])

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        row = {"created_at": int(time.time()), "level": level, "message": message, "data": data}
        _append_jsonl(self.dir / EVENTS, [row])

    def on_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        _append_jsonl(self.dir / SAMPLES, [{"step": step, **s} for s in samples])

    def on_checkpoint(self, step: int, path: str, metrics: dict[str, Any]) -> None:
        # The chart is redrawn at checkpoints, not every step: matplotlib costs ~0.3 s.
        plot_rewards(self.dir / METRICS, self.dir / CHART)
        self.on_event("info", f"Checkpoint saved at step {step}", {"path": path})

    def on_end(self, result: dict[str, Any]) -> None:
        (self.dir / RESULT).write_text(json.dumps(result, indent=1))
        plot_rewards(self.dir / METRICS, self.dir / CHART)

    def should_stop(self) -> StopRequest:
        return None

    def truncate_after(self, step: int) -> None:
        """Drop metric and sample rows of steps after `step` (a resumed run redoes them)."""
        for name in (METRICS, SAMPLES):
            path = self.dir / name
            if path.exists():
                rows = read_jsonl_rows(path)
                kept = [r for r in rows if r.get("step", 0) <= step]
                path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def _append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, default=str) + "\n")
        handle.flush()


def read_jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a run-dir JSONL file; a torn last line (killed mid-write) is dropped."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_rewards(metrics_path: Path, chart_path: Path) -> None:
    """rewards.png: train reward mean with a +-std band, validation reward as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = read_jsonl_rows(metrics_path) if metrics_path.exists() else []
    steps = [r["step"] for r in rows]
    mean = [r["train_reward_mean"] for r in rows]
    std = [r["train_reward_std"] for r in rows]
    valid = [(r["step"], r["valid_reward_mean"]) for r in rows
             if r.get("valid_reward_mean") is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, mean, label="train reward (mean)", color="tab:blue")
    ax.fill_between(steps, [m - s for m, s in zip(mean, std, strict=True)],
                    [m + s for m, s in zip(mean, std, strict=True)],
                    color="tab:blue", alpha=0.2, label="train reward ± std")
    if valid:
        ax.plot(*zip(*valid, strict=True), "o-", color="tab:orange", label="validation reward")
    ax.set_title("OpenRFT training rewards")
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("reward")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = chart_path.with_name(f".tmp-{chart_path.name}")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    tmp.replace(chart_path)
