"""GPU self-test of the vLLM engine: `python -m openrft.rollout.vllm --selftest MODEL_DIR`.

Run on a CUDA machine with vLLM installed. If MODEL_DIR does not exist, a ~5M-parameter tiny
model is built there (head size 64, which every vLLM attention backend supports). Checks,
each against the HF model as the oracle: sampled log-probs, full-weight sync, LoRA sync,
guided JSON, reasoning budget; then reports decode throughput of both engines.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from openrft.models.load import LoraSettings, load_model
from openrft.models.tiny import build_tiny_model
from openrft.rollout.engine import GenerationParams, Sample
from openrft.rollout.hf import HFRolloutEngine
from openrft.rollout.vllm import VLLMRolloutEngine

console = Console()
PROMPTS = [
    [{"role": "user", "content": "What is 17 + 25?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a gene."}],
]
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def _hf_logprobs(model: torch.nn.Module, sample: Sample) -> torch.Tensor:
    """Log-probs of the sample's tokens from one plain forward pass (the oracle)."""
    ids = torch.tensor([sample.prompt_ids + sample.completion_ids], device=model.device)
    with torch.no_grad():
        logits = model(ids).logits[0, len(sample.prompt_ids) - 1 : -1].float()
    targets = torch.tensor(sample.completion_ids, device=model.device)[:, None]
    return torch.log_softmax(logits, -1).gather(-1, targets)[:, 0].cpu()


def _mean_logprob_gap(model: Any, samples: list[Sample]) -> float:
    gaps = [
        (torch.tensor(s.completion_logprobs) - _hf_logprobs(model, s)).abs().mean().item()
        for s in samples
    ]
    return sum(gaps) / len(gaps)


def _perturb(model: Any, name_part: str, scale: float = 0.5) -> None:
    generator = torch.Generator(device="cpu").manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name_part in name:
                noise = torch.randn(param.shape, generator=generator) * scale
                param.add_(noise.to(param.device, param.dtype))


Results = list[tuple[str, bool, str]]  # (check, passed, detail)


def check_full_model(model_dir: Path, tolerance: float, results: Results) -> None:
    loaded = load_model(model_dir, device="cuda", dtype="float32", trainable=True)
    engine = VLLMRolloutEngine.from_model(loaded.model, loaded.tokenizer, enforce_eager=True)
    params = GenerationParams(max_tokens=32, seed=0)
    samples = engine.generate(PROMPTS, 4, params)
    _show(samples)
    gap = _mean_logprob_gap(loaded.model, samples)
    results.append(("sampled log-probs = HF log-probs", gap < tolerance, f"mean |gap| {gap:.4f}"))
    _perturb(loaded.model, "lm_head")
    engine.sync_weights(loaded.model)
    gap = _mean_logprob_gap(loaded.model, engine.generate(PROMPTS, 2, params))
    results.append(("full-weight sync", gap < tolerance, f"mean |gap| after sync {gap:.4f}"))
    template = loaded.tokenizer.chat_template
    loaded.tokenizer.chat_template = template + "<think>"  # every completion starts thinking
    budget = engine.generate(PROMPTS, 4, GenerationParams(max_tokens=32, reasoning_budget=4))
    loaded.tokenizer.chat_template = template
    closed = sum(not s.reasoning_unclosed for s in budget)
    results.append(("reasoning budget closes <think>", closed == len(budget),
                    f"{closed}/{len(budget)} closed"))
    results.append(_throughput(engine, HFRolloutEngine(loaded.model, loaded.tokenizer)))
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "strict": True, "schema": SCHEMA}}
    structured = engine.generate(PROMPTS, 4, GenerationParams(max_tokens=48, response_format=fmt))
    valid = sum(s.output_json is not None for s in structured)
    results.append(("guided JSON", valid == len(structured), f"{valid}/{len(structured)} valid"))
    del engine
    _free()


def check_lora(model_dir: Path, tolerance: float, results: Results) -> None:
    lora = LoraSettings(rank=8, alpha=16)
    loaded = load_model(model_dir, device="cuda", dtype="float32", lora=lora)
    _perturb(loaded.model, "lora_B")
    engine = VLLMRolloutEngine.from_model(loaded.model, loaded.tokenizer, enforce_eager=True)
    samples = engine.generate(PROMPTS, 2, GenerationParams(max_tokens=32, seed=0))
    gap = _mean_logprob_gap(loaded.model, samples)
    _perturb(loaded.model, "lora_B")
    engine.sync_weights(loaded.model)
    gap2 = _mean_logprob_gap(
        loaded.model, engine.generate(PROMPTS, 2, GenerationParams(max_tokens=32, seed=0))
    )
    ok = gap < tolerance and gap2 < tolerance
    results.append(("LoRA adapter + resync", ok, f"mean |gap| {gap:.4f}, resync {gap2:.4f}"))
    del engine
    _free()


def _throughput(vllm_engine: Any, hf_engine: Any) -> tuple[str, bool, str]:
    prompts = [[{"role": "user", "content": f"What is {i} + {i * 3}?"}] for i in range(8)]
    params = GenerationParams(max_tokens=64, min_tokens=64, seed=0)
    rates = {}
    for name, engine in (("vllm", vllm_engine), ("hf", hf_engine)):
        engine.generate(prompts, 8, params)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        engine.generate(prompts, 8, params)
        torch.cuda.synchronize()
        rates[name] = 64 * 64 / (time.perf_counter() - start)
    detail = ", ".join(f"{k} {v:,.0f} tok/s" for k, v in rates.items())
    return ("throughput 64 seqs x 64 tokens", True, detail)


def _show(samples: list[Sample]) -> None:
    table = Table("prompt", "finish", "tokens", "text (first 60 chars)")
    for s in samples:
        table.add_row(str(s.prompt_index), s.finish_reason, str(len(s.completion_ids)),
                      repr(s.raw_text[:60]))
    console.print(table)


def _free() -> None:
    gc.collect()
    torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openrft.rollout.vllm")
    parser.add_argument("--selftest", metavar="MODEL_DIR", required=True)
    parser.add_argument("--tolerance", type=float, default=0.05, help="mean |log-prob gap|")
    args = parser.parse_args(argv)
    model_dir = Path(args.selftest)
    if not (model_dir / "config.json").exists():
        build_tiny_model(
            model_dir, hidden=256, layers=4, heads=4, intermediate=512, vocab_size=4096
        )
    checks: list[Callable[[Path, float, Results], None]] = [check_full_model, check_lora]
    results: Results = []
    for check in checks:
        try:
            check(model_dir, args.tolerance, results)
        except Exception as err:  # report every check, even after one breaks
            console.print_exception()
            results.append((check.__name__, False, f"{type(err).__name__}: {err}"))
    table = Table("check", "result", "detail")
    for name, ok, detail in results:
        table.add_row(name, "[green]PASS" if ok else "[red]FAIL", detail)
    console.print(table)
    return 0 if all(ok for _, ok, _ in results) else 1
