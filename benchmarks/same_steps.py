"""Does a change keep the training step's arithmetic? Two GRPO steps under four settings
(LoRA; full; full with 2 iterations x 2 micro-batches; LoRA with beta 0.04) on a model
directory, with this checkout and with another source tree (`--baseline-src`, e.g.
`git archive <commit> src | tar -x -C /tmp/base`), each in its own process; then the
sampled texts, the metrics (timings aside) and every weight are compared for equality.

    python benchmarks/same_steps.py --model runs/bench-models/m5 --baseline-src /tmp/base

Used to show that fencing the fast path (2026-12-06) left `expert.fast_path: auto`
bit-identical (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SETTINGS = {
    "lora": {"finetune": "lora"},
    "full": {"finetune": "full"},
    "full_iterations": {"finetune": "full", "num_iterations": 2, "grad_accum_steps": 2},
    "lora_beta": {"finetune": "lora", "beta": 0.04},
}
TIMING = {"sampling_seconds", "grading_seconds", "training_seconds", "step_seconds",
          "tokens_per_second", "grader_latency_s"}


def run_steps(model: str, out: str) -> None:
    """Two steps per setting with the importable openrft; results saved to `out`."""
    import torch

    from openrft.graders.base import make_reward_fn
    from openrft.rl.config import config_from_dict, resolve
    from openrft.rl.policy_setup import build_policy, make_generation_params, make_rollout_engine
    from openrft.rl.step import StepContext, run_step

    torch.set_num_threads(1)
    grader = {"type": "string_check", "name": "an", "input": "{{ sample.output_text }}",
              "reference": "{{ item.target }}", "operation": "like"}
    rows = [{"messages": [{"role": "user", "content": f"question {i} " + "pad " * (i * 9)}],
             "target": "an"} for i in range(8)]  # prompts long enough to share a cache
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.jsonl"
        train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for name, expert in SETTINGS.items():
            config = config_from_dict({
                "model": model, "training_file": str(train_file), "grader": grader,
                "seed": 0, "output_dir": str(Path(tmp) / name),
                "hyperparameters": {"batch_size": 4, "n_epochs": 1},
                "expert": {"group_size": 4, "max_tokens": 24, "temperature": 0.9,
                           "base_learning_rate": 1e-3, **expert}})
            cfg = resolve(config, n_train_rows=len(rows))
            policy, tokenizer, _ = build_policy(cfg, None)
            reward_fn, _ = make_reward_fn(cfg.grader)
            takes_policy = "policy" in inspect.signature(make_rollout_engine).parameters
            engine = make_rollout_engine(cfg, policy if takes_policy else policy.model,
                                         tokenizer)
            ctx = StepContext(cfg, policy, engine, reward_fn, make_generation_params(cfg))
            steps = []
            for step in (1, 2):
                items = rows[(step - 1) * 4: step * 4]
                output = run_step(ctx, step, items, [i["messages"] for i in items])
                steps.append({"metrics": {k: v for k, v in output.metrics.items()
                                          if k not in TIMING},
                              "texts": [s["output_text"] for s in output.samples]})
            results[name] = {"steps": steps, "weights": {
                n: p.detach().clone() for n, p in policy.model.named_parameters()}}
    torch.save(results, out)


def compare(base_path: str, new_path: str) -> bool:
    import torch

    base, new = torch.load(base_path), torch.load(new_path)
    same = True
    for name in base:
        for step, (a, b) in enumerate(zip(base[name]["steps"], new[name]["steps"],
                                          strict=True), start=1):
            differing = {k for k in a["metrics"] if a["metrics"][k] != b["metrics"].get(k)}
            if a["texts"] != b["texts"] or differing:
                same = False
                print(f"{name} step {step}: texts differ: {a['texts'] != b['texts']}, "
                      f"metrics differ: {sorted(differing)}")
        weights = [n for n, w in base[name]["weights"].items()
                   if not torch.equal(w, new[name]["weights"][n])]
        same &= not weights
        replayed = [s["metrics"]["forward_replayed"] for s in base[name]["steps"]]
        verdict = "weights bit-identical" if not weights else f"{len(weights)} weights differ"
        print(f"{name}: {verdict}, forward_replayed {replayed}")
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory (HF format)")
    parser.add_argument("--baseline-src", required=True, help="a source tree holding src/")
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_out:
        run_steps(args.model, args.worker_out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        outs = {side: str(Path(tmp) / f"{side}.pt") for side in ("base", "new")}
        for side, src in (("base", Path(args.baseline_src) / "src"),
                          ("new", Path(__file__).resolve().parents[1] / "src")):
            env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
            subprocess.run([sys.executable, __file__, "--model", args.model, "--baseline-src",
                            args.baseline_src, "--worker-out", outs[side]], check=True, env=env)
        same = compare(outs["base"], outs["new"])
    print("IDENTICAL" if same else "DIFFERENT")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
