"""What a step reports besides its metrics: the sampled completions kept for
samples.jsonl (whole episodes included) and one warning line per distinct tool failure."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from openrft.graders.base import GradeResult
from openrft.rollout.engine import Messages, Sample


def tool_warnings(step: int, samples: list[Sample]) -> list[str]:
    """One line per distinct tool failure of the step (discarded rollouts, tool errors)."""
    discarded = Counter(s.discard_reason for s in samples if s.discard_reason)
    errors = Counter(f"{r['name']}: {r['error']}" for s in samples for r in s.tool_records
                     if r["error"] and not s.discard_reason)
    return ([f"Step {step}: {n} rollout(s) discarded: {why}" for why, n in discarded.items()]
            + [f"Step {step}: {n} tool call(s) failed ({why})" for why, n in errors.items()])


def sample_records(
    step: int,
    samples: list[Sample],
    grades: list[GradeResult],
    advantages: torch.Tensor,
    prompts: list[Messages],
    group_size: int,
    keep: int,
) -> list[dict[str, Any]]:
    """`keep` completions, taken round-robin over prompts so several prompts show."""
    g = group_size
    order = [p * g + j for j in range(g) for p in range(len(samples) // g)]
    return [
        {
            "step": step,
            "prompt": prompts[samples[i].prompt_index],
            "reasoning": samples[i].reasoning,
            "output_text": samples[i].output_text,
            "score": grades[i].score,
            "advantage": advantages[i].item(),
            "errors": [f"{e.code}: {e.message}" for e in grades[i].errors],
            "parse_error": samples[i].parse_error,
            "finish_reason": samples[i].finish_reason,
            **episode_record(samples[i]),
        }
        for i in order[:keep]
    ]


def episode_record(sample: Sample) -> dict[str, Any]:
    """The whole episode for sample viewers: turns, tool calls and outputs, trace id."""
    if sample.episode is None:
        return {}
    return {"episode": sample.episode, "output_tools": sample.output_tools,
            "trace_id": sample.trace_id, "discard_reason": sample.discard_reason}
