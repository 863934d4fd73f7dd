"""`VLLMRolloutEngine`: rollouts with vLLM on a CUDA GPU, same interface as the HF engine.

vLLM is imported only when an engine is built (never by `import openrft.rollout`).
- n samples per prompt through `SamplingParams(n=...)`; `logprobs=0` records the sampled
  token's log-prob (vLLM's default "raw" log-probs: the model's distribution before
  temperature/top-p, like the HF engine).
- `response_format` becomes vLLM guided (grammar-constrained) JSON decoding, and the answer
  is still parsed and validated like in the HF engine.
- Reasoning budgets run in two phases: up to the budget, then `</think>` is appended to
  every completion still thinking and generation continues (the forced token's log-prob is
  the model's, read from vLLM's prompt log-probs).
- `sync_weights(model)`: a peft (LoRA) model is saved as a new adapter and used through a
  `LoRARequest`; a fully fine-tuned model's weights are copied into vLLM's model in place
  (`load_weights`, tensor parallel size 1, in-process engine), and the prefix cache reset.

Self-test on a GPU machine: `python -m openrft.rollout.vllm --selftest MODEL_DIR`.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from openrft.errors import OpenRFTError
from openrft.rollout.completions import CompletionDecoder, check_params, render_chat_prompt
from openrft.rollout.engine import CausalLM, GenerationParams, Messages, Sample
from openrft.rollout.structured import check_response_format

logger = logging.getLogger(__name__)

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # ranks vLLM's LoRA kernels accept


class VLLMRolloutEngine:
    """Generate with a `vllm.LLM` holding the (base) model; see the module docstring."""

    def __init__(self, llm: Any, tokenizer: Any, *, lora: bool = False) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.completions = CompletionDecoder(tokenizer)
        self.lora = lora
        self._lora_request: Any = None
        self._lora_ids = itertools.count(1)
        self._adapter_dir: Path | None = None

    @classmethod
    def from_path(
        cls, model_path: str | Path, tokenizer: Any, **llm_options: Any
    ) -> VLLMRolloutEngine:
        """An engine over a model directory or hub id (options go to `vllm.LLM`)."""
        return cls(_make_llm(str(model_path), llm_options), tokenizer)

    @classmethod
    def from_model(
        cls, model: CausalLM, tokenizer: Any, *, gpu_memory_utilization: float = 0.3,
        **llm_options: Any,
    ) -> VLLMRolloutEngine:
        """An engine sampling from `model` (transformers or peft) as it is now.

        vLLM loads the model's base weights from disk, then `sync_weights(model)` brings in
        the in-memory state (LoRA adapter or fully fine-tuned weights).
        `gpu_memory_utilization` leaves room for training on the same GPU.
        """
        is_peft = hasattr(model, "peft_config")
        base = model.get_base_model() if is_peft else model
        path = _model_path(base)
        options = {"gpu_memory_utilization": gpu_memory_utilization, **llm_options}
        if is_peft:
            rank = max(config.r for config in model.peft_config.values())
            options.setdefault("enable_lora", True)
            options.setdefault("max_lora_rank", next(r for r in VLLM_LORA_RANKS if r >= rank))
        engine = cls(_make_llm(path, options), tokenizer, lora=is_peft)
        engine.sync_weights(model)
        return engine

    def generate(self, prompts: list[Messages], n: int, params: GenerationParams) -> list[Sample]:
        """len(prompts) * n samples, prompt-major (all samples of prompt 0 first)."""
        check_params(n, params)
        prompt_ids = [
            render_chat_prompt(self.tokenizer, m, f"prompts[{i}]") for i, m in enumerate(prompts)
        ]
        budget = params.reasoning_budget
        if budget is not None and self.completions.think_end_id is not None:
            return self._generate_with_budget(prompt_ids, n, params, budget)
        outputs = self._run(prompt_ids, self._sampling_params(n, params, params.max_tokens))
        samples = []
        for index, (prompt, output) in enumerate(zip(prompt_ids, outputs, strict=True)):
            for completion in sorted(output.outputs, key=lambda c: c.index):
                ids = list(completion.token_ids)
                samples.append(
                    self.completions.sample(
                        prompt_index=index,
                        prompt_ids=prompt,
                        completion_ids=ids,
                        logprobs=_sampled_logprobs(completion.logprobs, ids),
                        stopped=completion.finish_reason == "stop",
                        params=params,
                    )
                )
        return samples

    def sync_weights(self, model: CausalLM) -> None:
        """Sample from `model`'s current weights from now on (see the module docstring)."""
        if self.lora:
            self._sync_adapter(model)
        else:
            _load_weights_in_place(self.llm, model.state_dict().items())
            if hasattr(self.llm, "reset_prefix_cache"):
                self.llm.reset_prefix_cache()

    def _sync_adapter(self, model: CausalLM) -> None:
        from vllm.lora.request import LoRARequest

        old_dir = self._adapter_dir
        self._adapter_dir = Path(tempfile.mkdtemp(prefix="openrft-vllm-lora-"))
        model.save_pretrained(self._adapter_dir)
        lora_id = next(self._lora_ids)
        self._lora_request = LoRARequest(f"openrft-{lora_id}", lora_id, str(self._adapter_dir))
        if lora_id > 1 and hasattr(self.llm.llm_engine, "remove_lora"):
            self.llm.llm_engine.remove_lora(lora_id - 1)
        if old_dir is not None:
            shutil.rmtree(old_dir, ignore_errors=True)

    def _run(self, prompt_ids: list[list[int]], sampling_params: Any) -> list[Any]:
        requests = [{"prompt_token_ids": ids} for ids in prompt_ids]
        return self.llm.generate(
            requests, sampling_params, use_tqdm=False, lora_request=self._lora_request
        )

    def _sampling_params(self, n: int, params: GenerationParams, max_tokens: int, **extra: Any):
        from vllm import SamplingParams

        options: dict[str, Any] = {
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": max_tokens,
            "min_tokens": min(params.min_tokens, max_tokens),
            "stop": list(params.stop) or None,
            "seed": params.seed,
            "logprobs": 0,
            **extra,
        }
        if params.response_format is not None:
            options.update(_guided_json_options(params.response_format))
        return SamplingParams(**options)

    def _generate_with_budget(
        self, prompt_ids: list[list[int]], n: int, params: GenerationParams, budget: int
    ) -> list[Sample]:
        """Phase 1: `budget` tokens (one more when the model must first open <think> itself;
        the budget is counted from the start of the completion). Phase 2: completions still
        inside <think> get </think> appended; every unfinished one continues to max_tokens."""
        start_id, end_id = self.completions.think_start_id, self.completions.think_end_id
        assert end_id is not None  # generate() budgets only models with a </think> token
        opened = [bool(p) and p[-1] == start_id for p in prompt_ids]
        first_lens = [min(params.max_tokens, budget + (0 if o else 1)) for o in opened]
        first = self._run(prompt_ids, [self._sampling_params(n, params, m) for m in first_lens])
        rows = []  # [prompt index, prompt ids, completion ids, logprobs, finish reason]
        for index, (prompt, output) in enumerate(zip(prompt_ids, first, strict=True)):
            for completion in sorted(output.outputs, key=lambda c: c.index):
                ids = list(completion.token_ids)
                logprobs = _sampled_logprobs(completion.logprobs, ids)
                rows.append([index, prompt, ids, logprobs, completion.finish_reason])
        pending, contexts, phase2 = [], [], []
        for k, row in enumerate(rows):
            index, prompt, ids, _, reason = row
            if reason != "length" or len(ids) >= params.max_tokens:
                continue
            forced = [end_id] if _still_thinking(ids, opened[index], start_id, end_id) else []
            remaining = params.max_tokens - len(ids) - len(forced)
            if remaining <= 0:  # the forced </think> is the last token allowed
                row[2] = ids + forced
                row[3] = row[3] + [float("nan")] * len(forced)
                continue
            seed = None if params.seed is None else params.seed + k
            extra = {"seed": seed, "prompt_logprobs": 0 if forced else None}
            pending.append((row, forced))
            contexts.append(prompt + ids + forced)
            phase2.append(self._sampling_params(1, params, remaining, **extra))
        for (row, forced), output in zip(pending, self._run(contexts, phase2), strict=True):
            completion = output.outputs[0]
            more = list(completion.token_ids)
            forced_logprobs = [_prompt_logprob(output, t) for t in forced]
            row[2] = row[2] + forced + more
            row[3] = row[3] + forced_logprobs + _sampled_logprobs(completion.logprobs, more)
            row[4] = completion.finish_reason
        return [
            self.completions.sample(
                prompt_index=index,
                prompt_ids=prompt,
                completion_ids=ids,
                logprobs=logprobs,
                stopped=reason == "stop",
                params=params,
            )
            for index, prompt, ids, logprobs, reason in rows
        ]


def _still_thinking(ids: list[int], opened: bool, start_id: int | None, end_id: int) -> bool:
    """Whether the completion ends inside a think block (same rule as the HF loop)."""
    thinking = opened
    for token in ids:
        if token == start_id:
            thinking = True
        elif token == end_id:
            thinking = False
    return thinking


def _sampled_logprobs(step_logprobs: Any, ids: list[int]) -> list[float]:
    """The sampled token's log-prob at each step (vLLM: one {token_id: Logprob} per step)."""
    if not step_logprobs:
        return [float("nan")] * len(ids)
    return [float(step[token].logprob) for step, token in zip(step_logprobs, ids, strict=True)]


def _prompt_logprob(output: Any, token: int) -> float:
    """Log-prob of the prompt's last token (the forced </think>) from prompt_logprobs=0."""
    entries = getattr(output, "prompt_logprobs", None) or []
    last = entries[-1] if entries else None
    return float(last[token].logprob) if last and token in last else float("nan")


def _guided_json_options(response_format: dict[str, Any]) -> dict[str, Any]:
    """vLLM >= 0.11: structured_outputs=StructuredOutputsParams; older: guided_decoding."""
    schema = check_response_format(response_format)
    if response_format.get("type") == "text":
        return {}
    spec = {"json": schema} if schema is not None else {"json_object": True}
    try:
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(**spec)}
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(**spec)}


def _model_path(model: CausalLM) -> str:
    """Where vLLM can load `model`'s architecture and base weights from."""
    path = getattr(model.config, "_name_or_path", "") or getattr(model, "name_or_path", "")
    if path:
        return str(path)
    directory = tempfile.mkdtemp(prefix="openrft-vllm-model-")
    model.save_pretrained(directory)
    return directory


def _make_llm(path: str, options: dict[str, Any]) -> Any:
    # The in-process engine lets sync_weights reach the model object (no RPC copy).
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM

    options = {"model": path, "tokenizer": path, "seed": 0, **options}
    return LLM(**options)


def _load_weights_in_place(llm: Any, weights: Any) -> None:
    """Copy HF-named tensors into vLLM's model (vLLM maps names and fuses q/k/v itself)."""
    executor = llm.llm_engine.model_executor
    worker = getattr(executor, "driver_worker", None)
    worker = getattr(worker, "worker", worker)  # vLLM V1 wraps the GPU worker
    runner = getattr(worker, "model_runner", None)
    if runner is None or not hasattr(runner, "model"):
        raise OpenRFTError(
            "vllm weight sync needs an in-process engine with tensor_parallel_size=1 "
            "(set VLLM_ENABLE_V1_MULTIPROCESSING=0 before building the engine)"
        )
    runner.model.load_weights(weights)


if __name__ == "__main__":
    from openrft.rollout.vllm_selftest import main

    raise SystemExit(main())
