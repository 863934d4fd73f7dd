"""OpenRFT's GRPO step against TRL's GRPOTrainer, side by side, on the same model and batch.

Both sides run the same work per optimizer step: P prompts x G completions of exactly T
tokens (forced: min = max = T), one reward call, one forward+backward over the P*G
sequences (on-policy: num_iterations 1, beta 0, loss dapo, AdamW, lr 1e-6) and one
optimizer step. Each side runs in its own subprocess (clean peak RSS), and the sides are
interleaved repetition by repetition so that drifting machine load hits both alike. The
floor is a plain forward+backward over the same batch (prompt + T completion tokens,
log-probs at completion positions, a policy-gradient loss), the least any implementation
of the update alone can cost.

    python benchmarks/grpo_vs_trl.py --model DIR --prompts 8 --group 8 --tokens 64 --steps 6

The last line printed is `speedup_vs_trl=<median TRL s/step / median OpenRFT s/step>`.
TRL is an optional dependency: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`What is a+b?` chat prompts with the answer as a reference field."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        rows.append({"messages": [{"role": "user", "content": f"What is {a}+{b}?"}],
                     "answer": str(a + b)})
    return rows


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def lora_target_modules() -> list[str]:
    """The same adapter placement on both sides: every linear layer of a Llama block."""
    return ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# -- OpenRFT side ----------------------------------------------------------------------


def run_openrft(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from openrft.graders.base import make_reward_fn
    from openrft.rl.config import RFTConfig, resolve
    from openrft.rl.policy_setup import build_policy, make_generation_params, make_rollout_engine
    from openrft.rl.step import StepContext, run_step

    torch.set_num_threads(args.threads)
    rows = make_rows(args.prompts * (args.steps + 1))
    grader = {"type": "string_check", "name": "answer", "operation": "like",
              "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}"}
    expert: dict[str, Any] = {
        "group_size": args.group, "max_tokens": args.tokens, "beta": 0.0, "loss_type": "dapo",
        "num_iterations": 1, "base_learning_rate": 1e-6, "temperature": 1.0, "top_p": 1.0,
        "finetune": "lora" if args.lora else "full",
    }
    if args.bf16:
        expert["precision"] = "bf16"
    if args.lora:
        expert.update(lora_rank=args.lora, lora_alpha=2 * args.lora)
    expert.update(args.expert)
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.jsonl"
        train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        config = RFTConfig(model=args.model, training_file=str(train_file), grader=grader,
                           hyperparameters={"batch_size": args.prompts, "n_epochs": 1},
                           seed=0, output_dir=tmp, expert=expert)
        cfg = resolve(config, len(rows), 0)
        policy, tokenizer, _ = build_policy(cfg, None)
        reward_fn, built = make_reward_fn(cfg.grader)
        params = make_generation_params(cfg)
        params.min_tokens = args.tokens  # forced length: equal work on both sides
        # a baseline checkout from before the fast path was fenced (2026-12-06) takes the
        # model itself; since then the policy (its training path decodes the rollouts)
        takes_policy = "policy" in inspect.signature(make_rollout_engine).parameters
        engine = make_rollout_engine(cfg, policy if takes_policy else policy.model, tokenizer)
        ctx = StepContext(cfg=cfg, policy=policy, engine=engine,
                          reward_fn=reward_fn, params=params)
        steps, lengths, cpu = [], [], []
        for step in range(1, args.steps + 2):  # step 1 is the warm-up
            batch = rows[(step - 1) * args.prompts: step * args.prompts]
            cpu_start = time.process_time()
            out = run_step(ctx, step, batch, [r["messages"] for r in batch])
            cpu.append(time.process_time() - cpu_start)
            steps.append(out.metrics)
            lengths.append(out.metrics["completion_tokens_mean"])
        built.close()
    measured = steps[1:]
    return {
        "side": "openrft",
        "step_seconds": [m["step_seconds"] for m in measured],
        "cpu_seconds": cpu[1:],
        "generate_seconds": [m["sampling_seconds"] for m in measured],
        "update_seconds": [m["training_seconds"] for m in measured],
        # rows of zero-variance groups: with beta 0 the update skips them (same result)
        "untrained_rows": [m["zero_variance_groups"] * args.group for m in measured],
        "completion_tokens_mean": lengths,
        "peak_rss_mb": peak_rss_mb(),
    }


# -- TRL side --------------------------------------------------------------------------


def run_trl(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(args.threads)
    rows = make_rows(args.prompts * (args.steps + 1))
    data = Dataset.from_list([{"prompt": r["messages"], "answer": r["answer"]} for r in rows])
    lengths: list[float] = []

    def reward(completions: list[Any], answer: list[str], completion_ids: list[list[int]],
               **_: Any) -> list[float]:
        lengths.append(sum(len(c) for c in completion_ids) / len(completion_ids))
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [1.0 if a in t else 0.0 for t, a in zip(texts, answer, strict=True)]

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[float] = []
            self.cpu: list[float] = []

        def on_train_begin(self, *a: Any, **k: Any) -> None:
            self.marks.append(time.perf_counter())
            self.cpu.append(time.process_time())

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.marks.append(time.perf_counter())
            self.cpu.append(time.process_time())

    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=args.lora, lora_alpha=2 * args.lora, lora_dropout=0.0,
                                 target_modules=lora_target_modules(), task_type="CAUSAL_LM")
    # transformers 5.2x renamed gradient_checkpointing to activation_checkpointing.
    fields = GRPOConfig.__dataclass_fields__
    name = "activation_checkpointing" if "activation_checkpointing" in fields else (
        "gradient_checkpointing")
    checkpointing = {name: args.trl_checkpointing}
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(), use_cpu=not torch.cuda.is_available(),
        bf16=args.bf16, fp16=False,
        **checkpointing,
        per_device_train_batch_size=args.prompts * args.group, gradient_accumulation_steps=1,
        num_generations=args.group, max_completion_length=args.tokens,
        generation_kwargs={"min_new_tokens": args.tokens}, num_iterations=1, beta=0.0,
        learning_rate=1e-6, max_steps=args.steps + 1, logging_steps=1, save_strategy="no",
        report_to="none", seed=0, temperature=1.0, top_p=1.0, loss_type="dapo",
    )
    timer = StepTimer()
    trainer = GRPOTrainer(model=args.model, reward_funcs=reward, args=config,
                          train_dataset=data, callbacks=[timer], peft_config=peft_config)
    trainer.train()
    durations = [b - a for a, b in zip(timer.marks, timer.marks[1:], strict=False)]
    cpu = [b - a for a, b in zip(timer.cpu, timer.cpu[1:], strict=False)]
    return {
        "side": "trl",
        "step_seconds": durations[1:],
        "cpu_seconds": cpu[1:],
        "completion_tokens_mean": lengths,
        "peak_rss_mb": peak_rss_mb(),
    }


# -- floor -----------------------------------------------------------------------------


def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    """Plain forward+backward over the batch: completion-position log-probs, PG loss."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(device)
    if args.lora:  # the same adapters as both trainers: only they get gradients
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=args.lora, lora_alpha=2 * args.lora, lora_dropout=0.0,
            target_modules=lora_target_modules(), task_type="CAUSAL_LM"))
    model.train()
    n, prompt_len, t = args.prompts * args.group, 12, args.tokens
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (n, prompt_len + t), generator=generator).to(device)  # (N, P+T)
    advantages = torch.randn(n, 1, generator=generator).to(device)  # (N, 1)
    times, cpu = [], []
    for _ in range(args.floor_reps + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(input_ids=ids, logits_to_keep=t + 1).logits[:, :-1]  # (N, T, V)
        logp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, -t:, None])[..., 0]
        loss = -(logp * advantages).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return {"side": "floor", "step_seconds": times[1:], "cpu_seconds": cpu[1:],
            "peak_rss_mb": peak_rss_mb()}


WORKERS = {"openrft": run_openrft, "trl": run_trl, "floor": run_floor}


# -- driver ----------------------------------------------------------------------------


def spawn(side: str, argv: list[str], baseline_src: str | None) -> dict[str, Any]:
    """Run one side in a fresh process; `openrft-base` is OpenRFT imported from another
    source tree (a checkout of an older commit), for before/after comparisons."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = out.name
    worker = "openrft" if side == "openrft-base" else side
    env = dict(os.environ)
    if side == "openrft-base" and baseline_src:
        env["PYTHONPATH"] = str(Path(baseline_src) / "src") + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, *argv, "--worker", worker, "--worker-out", path]
    subprocess.run(cmd, check=True, env=env)
    result = json.loads(Path(path).read_text())
    result["side"] = side
    os.unlink(path)
    return result


def _expert_setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=JSON, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{key}: {value!r} is not JSON ({error})") from None


def describe(xs: list[float]) -> tuple[float, float, float]:
    return min(xs), statistics.median(xs), max(xs)


def versions() -> str:
    from importlib import metadata

    names = ["torch", "transformers", "trl", "peft", "openrft"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} -")
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory (HF format)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step (P)")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    parser.add_argument("--tokens", type=int, default=64, help="completion tokens (T), forced")
    parser.add_argument("--steps", type=int, default=6, help="measured steps per repetition")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions per side")
    parser.add_argument("--lora", type=int, default=0, help="LoRA rank on both sides (0: full)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--trl-checkpointing", action="store_true",
                        help="TRL with activation checkpointing (its default; off by default here)")
    parser.add_argument("--floor-reps", type=int, default=3)
    parser.add_argument("--sides", default="openrft,trl,floor")
    parser.add_argument("--json-out", help="write all raw results here")
    parser.add_argument("--baseline-src", help="also run OpenRFT from this source tree "
                        "(e.g. a `git worktree` of an older commit), interleaved")
    parser.add_argument("--expert", type=_expert_setting, action="append", default=[],
                        metavar="KEY=JSON", help="an OpenRFT `expert` setting, e.g. "
                        "skip_zero_advantage=false (repeatable; OpenRFT side only)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        Path(args.worker_out).write_text(json.dumps(WORKERS[args.worker](args)))
        return

    argv = list(sys.argv[1:])
    sides = args.sides.split(",")
    if args.baseline_src:
        sides.insert(1, "openrft-base")
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    load_before = os.getloadavg()
    for _ in range(args.reps):
        for side in sides:
            if side == "floor" and runs[side]:
                continue
            runs[side].append(spawn(side, argv, args.baseline_src))
    report(args, runs, load_before, os.getloadavg())


def report(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]],
           load_before: tuple[float, ...], load_after: tuple[float, ...]) -> None:
    """Print the table; `speedup_vs_trl=` is the last line (median TRL / median OpenRFT)."""
    work_tokens = args.prompts * args.group * args.tokens
    print(f"config: model={args.model} P={args.prompts} G={args.group} T={args.tokens} "
          f"steps={args.steps}x{args.reps} lora={args.lora or 'off'} bf16={args.bf16} "
          f"threads={args.threads}")
    print(f"versions: {versions()}")
    print(f"load average (1 min) before={load_before[0]:.2f} after={load_after[0]:.2f} "
          f"on {os.cpu_count()} cpus")
    medians: dict[str, float] = {}
    cpu_medians: dict[str, float] = {}
    for side, results in runs.items():
        seconds = [s for r in results for s in r["step_seconds"]]
        lo, mid, hi = describe(seconds)
        medians[side] = mid
        cpu = cpu_medians[side] = statistics.median(s for r in results for s in r["cpu_seconds"])
        rss = max(r["peak_rss_mb"] for r in results)
        lengths = {round(x, 2) for r in results for x in r.get("completion_tokens_mean", [])}
        extra = f" completion_tokens_mean={sorted(lengths)}" if lengths else ""
        print(f"{side:12s} s/step min={lo:.3f} median={mid:.3f} max={hi:.3f} cpu_s={cpu:.3f} "
              f"tokens/s={work_tokens / mid:.0f} peak_rss_mb={rss:.0f}{extra}")
        if side.startswith("openrft"):
            gen = statistics.median(s for r in results for s in r["generate_seconds"])
            upd = statistics.median(s for r in results for s in r["update_seconds"])
            untrained = [n for r in results for n in r.get("untrained_rows", [])]
            share = sum(untrained) / max(1, len(untrained) * args.prompts * args.group)
            print(f"{side:12s} generate median={gen:.3f}s update median={upd:.3f}s "
                  f"zero_advantage_rows={share:.0%}")
    if "floor" in medians and "openrft" in medians:
        print(f"floor/openrft={medians['floor'] / medians['openrft']:.2f} "
              "(share of the step a plain forward+backward would take)")
    if "openrft-base" in medians and "openrft" in medians:
        print(f"speedup_vs_baseline={medians['openrft-base'] / medians['openrft']:.2f} "
              f"cpu={cpu_medians['openrft-base'] / cpu_medians['openrft']:.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1))
    if "trl" in medians and "openrft" in medians:
        # CPU seconds per step: robust to other load only with --threads 1 (no spin-waits).
        print(f"cpu_speedup_vs_trl={cpu_medians['trl'] / cpu_medians['openrft']:.2f}")
        print(f"speedup_vs_trl={medians['trl'] / medians['openrft']:.2f}")


if __name__ == "__main__":
    main()
