"""Seconds per step of the synchronous and the async mode (`expert.max_staleness`), on
the local backend and on Ray (with one or more data-parallel trainer actors,
`expert.ray.trainers`), with the same tiny task: does sampling step t+1 while step t
updates pay on this machine, and do two trainers?

Each configuration trains `--steps` steps in a fresh process (Ray: a Ray instance started
for the run, stopped at its end) and reports medians over steps 2..N (step 1 has nothing
to overlap) of the trainer's wall time per step, and of the phases as each side timed them.
The configurations run interleaved `--repeats` times (the machine's load drifts); the
table gives the median over the repeats of each number.

    python benchmarks/async_steps.py --backends local,ray --staleness 0,1 --steps 12
    python benchmarks/async_steps.py --backends ray --staleness 0 --trainers 1,2

Ray's actors each reserve half a CPU (rollout worker, trainers) and one grading task
half a CPU, so two trainers fit a 2-CPU machine; every process runs `--threads` threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The Ray instance each run starts is one machine: loopback addresses only, as in the tests.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # else Ray 2.60 writes ~/.ray/auth_token


def run_one(args: argparse.Namespace) -> None:
    """Child process: one training run; prints its per-step metrics as JSON."""
    import torch

    from openrft.models.tiny import build_tiny_model
    from openrft.rl.config import config_from_dict
    from openrft.rl.trainer import train

    torch.set_num_threads(args.threads)
    root = Path(args.workdir)
    model = Path(args.model) if args.model else root / "model"
    if not model.exists():
        build_tiny_model(model)
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q {i}"}]})
                            + "\n" for i in range(64)))
    started = time.perf_counter()
    train(config_from_dict({
        "model": str(model), "training_file": str(data), "seed": 0,
        "output_dir": str(root / "run"),
        "grader": {"type": "string_check", "name": "e", "input": "{{ sample.output_text }}",
                   "reference": "e", "operation": "like"},
        "hyperparameters": {"batch_size": args.prompts, "n_epochs": 10},
        "expert": {"group_size": args.group, "max_tokens": args.tokens,
                   "max_steps": args.steps, "save_every": 10_000, "preflight": False,
                   "base_learning_rate": 1e-3, "backend": args.backend,
                   "max_staleness": args.max_staleness, "reuse_rollout_forward": False,
                   "ray": {"cpus_per_rollout_worker": 0.5, "grading_tasks": 1,
                           "trainers": int(args.trainers), "cpus_per_trainer": 0.5}},
    }))
    rows = [json.loads(line) for line in (root / "run" / "metrics.jsonl").open()]
    print(json.dumps({"rows": rows, "wall_s": time.perf_counter() - started}))


def measure(args: argparse.Namespace, backend: str, staleness: int, trainers: int
            ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        argv = [sys.executable, __file__, "--one", "--workdir", workdir, "--backend", backend,
                "--max-staleness", str(staleness), "--trainers", str(trainers),
                "--steps", str(args.steps),
                "--prompts", str(args.prompts), "--group", str(args.group),
                "--tokens", str(args.tokens), "--threads", str(args.threads)]
        if args.model:
            argv += ["--model", args.model]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    later = result["rows"][1:]
    median = statistics.median
    return {"backend": backend, "max_staleness": staleness, "trainers": trainers,
            "step_s": median(r["step_seconds"] for r in later),
            "sampling_s": median(r["sampling_seconds"] for r in later),
            "training_s": median(r["training_seconds"] for r in later),
            "steps_2_to_n_s": sum(r["step_seconds"] for r in later),
            "run_s": result["wall_s"],
            "staleness": sorted({r["staleness"] for r in result["rows"]})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--max-staleness", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--model", help="model directory (default: the tiny test model)")
    parser.add_argument("--backends", default="local,ray")
    parser.add_argument("--staleness", default="0,1", help="max_staleness values")
    parser.add_argument("--trainers", default="1", help="expert.ray.trainers values (ray)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return
    load_before = os.getloadavg()[0]
    trainer_counts = [int(t) for t in str(args.trainers).split(",")]
    configs = [(backend, int(k), t) for backend in args.backends.split(",")
               for k in args.staleness.split(",")
               for t in (trainer_counts if backend == "ray" else [1])]
    runs = [measure(args, *config) for _ in range(args.repeats) for config in configs]
    cells = []
    for config in configs:
        mine = [r for r in runs if (r["backend"], r["max_staleness"], r["trainers"]) == config]
        cells.append({key: statistics.median(r[key] for r in mine)
                      if isinstance(mine[0][key], float) else mine[0][key] for key in mine[0]})
    print(f"{args.prompts} prompts x {args.group} completions x {args.tokens} tokens, "
          f"{args.steps} steps, {args.repeats} repeats, torch threads {args.threads}, "
          f"{os.cpu_count()} cpus, load average before {load_before:.2f} "
          f"after {os.getloadavg()[0]:.2f}")
    print("| backend | max_staleness | trainers | s/step | sampling s | update s "
          "| steps 2-N s | whole run s | staleness seen |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in cells:
        print(f"| {c['backend']} | {c['max_staleness']} | {c['trainers']} | {c['step_s']:.3f} "
              f"| {c['sampling_s']:.3f} | {c['training_s']:.3f} | {c['steps_2_to_n_s']:.2f} "
              f"| {c['run_s']:.1f} | {c['staleness']} |")


if __name__ == "__main__":
    main()
