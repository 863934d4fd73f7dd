"""Seconds for the model turns of a batch of 3-turn tool episodes: each turn prefilling
the episodes so far again (`decode_rows`) or only the new tokens on the kept KV cache
(`episode_turns`, rollout/turns.py), with the plain forward and the engine's default
(for Llama-family models on CPU, the fast path's hand-written forward).

Turns are sampled (temperature 1 unless --temperature says otherwise, one seed: the rows
of a group differ, as in RFT) and
forced to full length (min_tokens = max_tokens), and between turns every
row gets the same tool turn (the template's tool message for a short output, ~20
tokens), so both sides do the same work; the prompts are the tool_lookup example's
questions rendered with its tool schema. Median of `--repeats` runs each, interleaved.

    python benchmarks/episode_turns.py --model tiny
    flock /work/wt/smollm2.lock python benchmarks/episode_turns.py --model smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def episode_batch(engine: Any, prompts: list[list[int]], tool: list[int], turns: int,
                  params: Any, cached: bool) -> list[list[int]]:
    """Every row through `turns` model turns with `tool` between them; the final rows."""
    rows = {i: list(p) for i, p in enumerate(prompts)}
    generator = engine.generator(params.seed)
    session = engine.episode_turns(params, generator) if cached else None
    for turn in range(turns):
        keys = list(rows)
        batch = [rows[k] for k in keys]
        out = (session.decode(keys, batch) if session is not None
               else engine.decode_rows(batch, params, generator))
        for key, (ids, _, _) in zip(keys, out, strict=True):
            rows[key] = rows[key] + ids + (tool if turn + 1 < turns else [])
    return [rows[k] for k in sorted(rows)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    args = parser.parse_args()

    import torch
    import transformers

    from openrft.examples.tool_lookup.data import TOOL_SCHEMA
    from openrft.models.load import load_model
    from openrft.models.tiny import build_tiny_model
    from openrft.rollout.decode import TransformersForward
    from openrft.rollout.engine import GenerationParams
    from openrft.rollout.hf import HFRolloutEngine
    from openrft.rollout.tool_format import render_text

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        source = str(build_tiny_model(Path(tmp) / "tiny")) if args.model == "tiny" else args.model
        loaded = load_model(source)
    model, tok = loaded.model.eval(), loaded.tokenizer
    questions = ["Which gene is associated with Acute intermittent porphyria?",
                 "Which gene is associated with Pierpont syndrome?",
                 "Which gene is associated with Alport syndrome?",
                 "Which gene is associated with Fabry disease?"][: args.prompts]
    tools = [TOOL_SCHEMA] if args.model != "tiny" else None  # the tiny context is 512
    prompts = [tok(render_text(tok, [{"role": "user", "content": q}], tools, True),
                   add_special_tokens=False)["input_ids"]
               for q in questions for _ in range(args.group)]
    tool_text = render_text(tok, [{"role": "user", "content": "q"}, {"role": "assistant",
                            "content": "x"}, {"role": "tool", "content": "HMBS"}], None, True)
    before = render_text(tok, [{"role": "user", "content": "q"}, {"role": "assistant",
                         "content": "x"}], None, False)
    tool = tok(tool_text[len(before):], add_special_tokens=False)["input_ids"]
    params = GenerationParams(max_tokens=args.max_tokens, min_tokens=args.max_tokens,
                              temperature=args.temperature, seed=0)
    sides = {
        "re-prefill, engine default forward": (HFRolloutEngine(model, tok), False),
        "re-prefill, plain forward": (HFRolloutEngine(model, tok,
                                      decode_forward=TransformersForward), False),
        "kept cache, engine default forward": (HFRolloutEngine(model, tok), True),
        "kept cache, plain forward": (HFRolloutEngine(model, tok,
                                      decode_forward=TransformersForward), True),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    finals: dict[str, list[list[int]]] = {}
    for _ in range(args.repeats):
        for name, (engine, cached) in sides.items():
            started = time.perf_counter()
            finals[name] = episode_batch(engine, prompts, tool, args.turns, params, cached)
            times[name].append(time.perf_counter() - started)
    print(json.dumps({
        "model": args.model, "rows": len(prompts), "prompt_tokens": [len(p) for p in prompts],
        "tool_tokens": len(tool), "max_tokens": args.max_tokens, "turns": args.turns,
        "threads": args.threads, "torch": torch.__version__,
        "transformers": transformers.__version__,
        "median_s": {name: round(statistics.median(t), 3) for name, t in times.items()},
        "temperature": args.temperature,
        "rows_equal_to_re_prefill_plain": {  # float rounding can flip a sampled token
            name: sum(a == b for a, b in zip(finals[name], finals["re-prefill, plain forward"],
                                             strict=True)) for name in finals},
    }, indent=1))


if __name__ == "__main__":
    main()
