"""A stand-in for the slice of vLLM's API that VLLMRolloutEngine uses, for CPU tests.

It follows vLLM's documented semantics (n completions per request in `outputs`, one
{token_id: Logprob} per sampled token with logprobs=0, prompt_logprobs with a leading None,
finish_reason "stop"/"length", a list of SamplingParams matching the prompts) and computes
with a transformers model, so the engine's glue (ordering, two-phase reasoning budgets,
weight sync plumbing) can be checked against the HF engine. Real vLLM is checked by
`python -m openrft.rollout.vllm --selftest` on a GPU.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch


class SamplingParams:
    def __init__(self, **options: Any) -> None:
        self.prompt_logprobs = None
        self.__dict__.update(options)


class StructuredOutputsParams:
    def __init__(self, **spec: Any) -> None:
        self.spec = spec


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class Logprob:
    logprob: float


@dataclass
class CompletionOutput:
    index: int
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]]
    finish_reason: str


@dataclass
class RequestOutput:
    outputs: list[CompletionOutput]
    prompt_logprobs: list[dict[int, Logprob] | None] | None = None


class FakeLLM:
    """`vllm.LLM(model=..., tokenizer=..., seed=..., **options)` over a transformers model."""

    def __init__(self, model: str, tokenizer: str, seed: int = 0, **options: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model, self.tokenizer, self.seed, self.options = model, tokenizer, seed, options
        self.hf = AutoModelForCausalLM.from_pretrained(model).eval()
        self.tok = AutoTokenizer.from_pretrained(tokenizer)
        self.requests: list[tuple[list[list[int]], list[SamplingParams], Any]] = []
        self.removed_loras: list[int] = []
        runner = SimpleNamespace(model=SimpleNamespace(load_weights=self._load_weights))
        worker = SimpleNamespace(worker=SimpleNamespace(model_runner=runner))
        self.llm_engine = SimpleNamespace(
            model_executor=SimpleNamespace(driver_worker=worker),
            remove_lora=self.removed_loras.append,
        )
        LLMS.append(self)

    def _load_weights(self, weights: Any) -> None:
        self.hf.load_state_dict(dict(weights))

    def reset_prefix_cache(self) -> None:
        pass

    def generate(self, requests, sampling_params, use_tqdm=True, lora_request=None):
        if not isinstance(sampling_params, list):
            sampling_params = [sampling_params] * len(requests)
        prompts = [r["prompt_token_ids"] for r in requests]
        self.requests.append((prompts, sampling_params, lora_request))
        return [self._one(p, sp) for p, sp in zip(prompts, sampling_params, strict=True)]

    def _one(self, prompt: list[int], sp: SamplingParams) -> RequestOutput:
        from transformers.generation.stopping_criteria import StopStringCriteria

        from openrft.rollout.decode import BatchDecoder, DecodeSettings

        generator = None if sp.seed is None else torch.Generator().manual_seed(sp.seed)
        settings = DecodeSettings(
            max_tokens=sp.max_tokens,
            pad_id=self.tok.pad_token_id,
            eos_ids=[self.tok.eos_token_id],
            min_tokens=sp.min_tokens,
            temperature=sp.temperature,
            top_p=sp.top_p,
            generator=generator,
            stop_criteria=StopStringCriteria(self.tok, sp.stop) if sp.stop else None,
        )
        ids = torch.tensor([prompt] * sp.n)
        decoder = BatchDecoder(self.hf, ids, torch.ones_like(ids), settings)
        for _ in decoder:
            pass
        out = decoder.output
        outputs = []
        for j in range(sp.n):
            length = int(out.lengths[j])
            tokens = out.tokens[j, :length].tolist()
            steps = zip(tokens, out.logprobs[j], strict=False)
            logprobs = [{t: Logprob(float(lp))} for t, lp in steps]
            reason = "stop" if bool(out.stopped[j]) else "length"
            outputs.append(CompletionOutput(j, tokens, logprobs, reason))
        prompt_logprobs = self._prompt_logprobs(prompt) if sp.prompt_logprobs == 0 else None
        return RequestOutput(outputs, prompt_logprobs)

    def _prompt_logprobs(self, prompt: list[int]) -> list[dict[int, Logprob] | None]:
        with torch.no_grad():
            logits = self.hf(torch.tensor([prompt])).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, -1).gather(-1, torch.tensor(prompt[1:])[:, None])
        return [None] + [
            {t: Logprob(float(lp))} for t, lp in zip(prompt[1:], logprobs[:, 0], strict=True)
        ]


LLMS: list[FakeLLM] = []


def install(monkeypatch: Any) -> None:
    """Make `import vllm` (and the submodules the engine uses) resolve to this fake."""
    LLMS.clear()
    modules = {}
    for name in ("vllm", "vllm.sampling_params", "vllm.lora", "vllm.lora.request"):
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        modules[name] = module
    modules["vllm"].LLM = FakeLLM
    modules["vllm"].SamplingParams = SamplingParams
    modules["vllm.sampling_params"].StructuredOutputsParams = StructuredOutputsParams
    modules["vllm.lora.request"].LoRARequest = LoRARequest
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
