"""The one interface that generates text: `RolloutEngine`, and the `Sample` it returns.

The trainer, evaluation, preflight and the service's chat endpoint all generate through
this protocol; HF (CPU/GPU) and vLLM (GPU) engines implement it, and a Ray-backed engine
slots in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

Messages = list[dict[str, Any]]  # chat messages: [{"role": ..., "content": ...}, ...]

# A transformers causal LM (PreTrainedModel), or a peft model wrapping one: typed as their
# common base class, torch's Module. Only the type checker imports torch here: importing
# openrft.rollout stays light (tests/rollout/test_engine_factory.py).
if TYPE_CHECKING:
    from torch.nn import Module as CausalLM
else:
    CausalLM = Any


@dataclass
class GenerationParams:
    """How to sample. Token counts are in tokens; `None` means "no limit/default"."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    reasoning_budget: int | None = None  # tokens allowed for the reasoning part, if any
    response_format: dict[str, Any] | None = None  # OpenAI json_schema response_format
    seed: int | None = None
    min_tokens: int = 0  # benchmarks force equal lengths with min_tokens == max_tokens


@dataclass
class Sample:
    """One generated completion, with everything the grader and the trainer need."""

    prompt_index: int  # which prompt of the batch this completion answers
    output_text: str  # the final answer the grader sees (reasoning stripped)
    reasoning: str = ""  # the model's reasoning, kept for display and analysis
    output_json: Any = None  # parsed JSON when response_format asked for a schema
    parse_error: str | None = None  # why output_json could not be produced
    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    completion_logprobs: list[float] = field(default_factory=list)  # model log-probs (raw logits)
    finish_reason: str = "stop"  # "stop" or "length"
    raw_text: str = ""  # the full decoded completion, reasoning included
    reasoning_unclosed: bool = False  # <think> never closed: the answer is empty
    # Tool use and multi-turn episodes (rollout/episodes.py); None/empty for plain samples.
    completion_mask: list[float] | None = None  # 1 on the model's own tokens, 0 on tool output
    output_tools: list[dict[str, Any]] | None = None  # the calls made (chat `tool_calls` shape)
    episode: list[dict[str, Any]] | None = None  # the conversation: turns, calls, outputs
    tool_records: list[dict[str, Any]] = field(default_factory=list)  # one per executed call
    trace_id: str | None = None  # sent with every tool call and to endpoint graders
    discard_reason: str | None = None  # a tool failed for good: the rollout is not trained on

    def grader_view(self) -> dict[str, Any]:
        """The `sample` namespace graders see (OpenAI: output_text, output_json, output_tools;
        an episode's trace_id, which the endpoint grader sends alongside)."""
        view: dict[str, Any] = {"output_text": self.output_text}
        if self.output_json is not None:
            view["output_json"] = self.output_json
        if self.output_tools is not None:
            view["output_tools"] = self.output_tools
        if self.trace_id is not None:
            view["trace_id"] = self.trace_id
        return view


@runtime_checkable
class RolloutEngine(Protocol):
    """Generates `n` completions for each prompt (a list of chat messages)."""

    def generate(
        self, prompts: list[Messages], n: int, params: GenerationParams
    ) -> list[Sample]:
        """Return len(prompts) * n samples, grouped by prompt (prompt-major order)."""
        ...

    def sync_weights(self, model: CausalLM) -> None:
        """Make the engine sample from the current trained weights (no-op when shared)."""
        ...
