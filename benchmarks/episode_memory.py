"""Peak RSS of one GRPO update on a batch of tool episodes, as the tool_lookup example
trains them (LoRA, 4 prompts x 4 completions, 48 tokens per model turn, 2 turns).

The batch is built, not sampled: each row is the example's real prompt (rendered with the
tool schema by the model's template) followed by a worst-case episode, a 48-token model
turn, the template's tool turn, and another 48-token model turn (random model tokens:
the update's cost depends on shapes, not on which tokens they are). Advantages are all
non-zero, so no row is skipped. One update runs in this process; the peak RSS (ru_maxrss)
is reported before and after it.

    flock /work/wt/smollm2.lock python benchmarks/episode_memory.py --micro-batch-tokens 0
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--turn-tokens", type=int, default=48)
    parser.add_argument("--fast-path", default="auto", choices=["auto", "off"])
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--micro-batch-tokens", type=int, default=0, help="0: no limit")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from openrft.examples.tool_lookup.data import TOOL_SCHEMA, answer_grader
    from openrft.rl.config import RFTConfig, resolve
    from openrft.rl.logprobs import pack_samples
    from openrft.rl.policy_setup import build_policy
    from openrft.rollout.engine import Sample
    from openrft.rollout.tool_format import render_text

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.jsonl"
        data.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
        config = RFTConfig(model=args.model, training_file=str(data), grader=answer_grader(),
                           output_dir=str(Path(tmp) / "run"), seed=0,
                           hyperparameters={"batch_size": 1, "n_epochs": 1},
                           expert={"group_size": args.rows, "max_tokens": args.turn_tokens,
                                   "fast_path": args.fast_path, "preflight": False,
                                   "grad_accum_steps": args.grad_accum,
                                   "micro_batch_tokens": args.micro_batch_tokens or None})
        cfg = resolve(config, 1)
        policy, tokenizer, _ = build_policy(cfg, None)
    question = [{"role": "user", "content": "Which gene is associated with Acute "
                 "intermittent porphyria? Answer with the gene symbol."}]
    prompt = render_text(tokenizer, question, [TOOL_SCHEMA], add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    tool_turn = tokenizer("<|im_end|>\n<|im_start|>user\n<tool_response>\nHMBS\n"
                          "</tool_response><|im_end|>\n<|im_start|>assistant\n",
                          add_special_tokens=False)["input_ids"]
    generator = torch.Generator().manual_seed(0)
    samples = []
    for row in range(args.rows):
        turns = torch.randint(100, 40_000, (2, args.turn_tokens), generator=generator).tolist()
        ids = turns[0] + tool_turn + turns[1]
        mask = [1.0] * args.turn_tokens + [0.0] * len(tool_turn) + [1.0] * args.turn_tokens
        samples.append(Sample(prompt_index=row, output_text="", prompt_ids=prompt_ids,
                              completion_ids=ids, completion_mask=mask))
    batch = pack_samples(samples, policy.pad_token_id)
    advantages = torch.linspace(-1.0, 1.0, args.rows)
    before = peak_rss_mb()
    started = time.perf_counter()
    policy.path.update(policy, cfg, batch, advantages)
    print(json.dumps({
        "rows": args.rows, "prompt_tokens": len(prompt_ids),
        "completion_tokens": batch.completion_length, "fast_path": args.fast_path,
        "grad_accum_steps": args.grad_accum,
        "micro_batch_tokens": args.micro_batch_tokens or None,
        "peak_rss_mb_before_update": round(before),
        "peak_rss_mb_after_update": round(peak_rss_mb()),
        "update_s": round(time.perf_counter() - started, 2),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
