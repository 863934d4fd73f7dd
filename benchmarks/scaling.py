"""How OpenRFT's GRPO step cost grows with the work: tokens/s against batch size (P*G)
and completion length T, each row also as a fraction of the floor.

The floor is a plain forward+backward over the same batch (completion-position log-probs,
a policy-gradient loss; see grpo_vs_trl.py): the update alone, with no generation. So
`floor/openrft` says which share of a whole GRPO step (generate + grade + update) the
unavoidable update compute takes; the rest is mostly generation. Each cell runs in its own
subprocess through grpo_vs_trl.py's workers, so peak RSS is per configuration.

    python benchmarks/scaling.py --model DIR --batches 16,32,64,128 --lengths 32,64,128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grpo_vs_trl import spawn, versions  # noqa: E402


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def measure(args: argparse.Namespace, batch: int, tokens: int) -> dict[str, Any]:
    """One (P*G, T) cell: OpenRFT steps and the floor, in two fresh processes."""
    prompts = max(1, batch // args.group)
    argv = ["--model", args.model, "--prompts", str(prompts), "--group", str(args.group),
            "--tokens", str(tokens), "--steps", str(args.steps), "--threads", str(args.threads),
            "--floor-reps", str(args.floor_reps)]
    openrft, floor = spawn("openrft", argv, None), spawn("floor", argv, None)
    median = statistics.median
    return {
        "rows": prompts * args.group, "tokens": tokens,
        "step_s": median(openrft["step_seconds"]),
        "cpu_s": median(openrft["cpu_seconds"]),
        "generate_s": median(openrft["generate_seconds"]),
        "update_s": median(openrft["update_seconds"]),
        "floor_s": median(floor["step_seconds"]),
        "peak_rss_mb": openrft["peak_rss_mb"],
    }


def print_table(cells: list[dict[str, Any]]) -> None:
    print("| P*G | T | s/step | completion tok/s | generate s | update s | floor s "
          "| floor/openrft | update/floor | cpu s/step | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in cells:
        tok_s = c["rows"] * c["tokens"] / c["step_s"]
        print(f"| {c['rows']} | {c['tokens']} | {c['step_s']:.3f} | {tok_s:.0f} "
              f"| {c['generate_s']:.3f} | {c['update_s']:.3f} | {c['floor_s']:.3f} "
              f"| {c['floor_s'] / c['step_s']:.2f} | {c['update_s'] / c['floor_s']:.2f} "
              f"| {c['cpu_s']:.3f} | {c['peak_rss_mb']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory (HF format)")
    parser.add_argument("--batches", type=_ints, default=[16, 32, 64, 128],
                        help="P*G values (comma-separated); P = value / group")
    parser.add_argument("--lengths", type=_ints, default=[32, 64, 128],
                        help="completion lengths T (comma-separated), forced")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    parser.add_argument("--steps", type=int, default=3, help="measured steps per cell")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--floor-reps", type=int, default=3)
    parser.add_argument("--json-out", help="write the cells here")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    cells = [measure(args, b, t) for t in args.lengths for b in args.batches]
    print(f"model={args.model} G={args.group} steps={args.steps} threads={args.threads}")
    print(f"versions: {versions()}")
    print(f"load average (1 min) before={load_before:.2f} after={os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cpus")
    print_table(cells)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "cells": cells}, indent=1))


if __name__ == "__main__":
    main()
