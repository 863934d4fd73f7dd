"""Questions "which gene is associated with <disease>?" built from the real HPO release.

Only diseases with exactly one causal gene symbol, a short name (short prompts on a small
CPU budget) and a name that does not spell the gene are kept, so the answer is neither
ambiguous nor readable from the question. The split is by disease: held-out questions ask
about diseases no training row (SFT or RFT) mentions.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from openrft.examples.rare_disease.hpo_data import HPOData

TOOL_NAME = "gene_lookup"
TOOL_SCHEMA: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Return the gene associated with a disease.",
        "parameters": {
            "type": "object",
            "properties": {"disease": {"type": "string", "description": "The disease name."}},
            "required": ["disease"],
        },
    },
}
MAX_NAME_CHARS = 30


@dataclass(frozen=True)
class Entry:
    """One disease and its single causal gene."""

    disease_id: str
    name: str
    gene: str


def eligible_entries(data: HPOData) -> list[Entry]:
    """Single-gene diseases with a short name that does not contain the gene symbol."""
    entries = []
    for disease in data.diseases.values():
        if len(disease.genes) != 1 or len(disease.name) > MAX_NAME_CHARS:
            continue
        gene = disease.genes[0]
        if gene.startswith("NCBIGene:") or gene.lower() in disease.name.lower():
            continue
        entries.append(Entry(disease.id, disease.name, gene))
    return sorted(entries, key=lambda e: e.disease_id)


def split_entries(
    entries: list[Entry], n_train: int, n_test: int, seed: int = 0
) -> tuple[list[Entry], list[Entry]]:
    """Disjoint (train, held-out) samples of diseases, drawn by `seed`.

    Names are unique across the two parts (two diseases may share a name), so a held-out
    question never repeats a training one.
    """
    by_name: dict[str, Entry] = {}
    for entry in entries:
        by_name.setdefault(entry.name.lower(), entry)
    unique = sorted(by_name.values(), key=lambda e: e.disease_id)
    if n_train + n_test > len(unique):
        raise ValueError(f"asked for {n_train + n_test} diseases, only {len(unique)} eligible")
    chosen = random.Random(seed).sample(unique, n_train + n_test)
    return chosen[:n_train], chosen[n_train:]


def question(entry: Entry) -> str:
    return f"Which gene is associated with {entry.name}? Answer with the gene symbol."


def task_row(entry: Entry) -> dict[str, Any]:
    """An OpenAI RFT row: the question, the tool's schema and the reference gene."""
    return {
        "messages": [{"role": "user", "content": question(entry)}],
        "tools": [TOOL_SCHEMA],
        "gene": entry.gene,
        "disease": entry.name,
    }


def demonstration_row(entry: Entry, system_prompt: str) -> dict[str, Any]:
    """An SFT chat row: the call, the tool's answer, then the gene as the final answer.

    `system_prompt` is the tools system message the episode runner renders for SmolLM2
    (`tools_system_prompt`), so the warm start sees exactly the prompts RFT and
    evaluation use.
    """
    call = [{"name": TOOL_NAME, "arguments": {"disease": entry.name}}]
    return {
        "messages": [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": question(entry)},
            {"role": "assistant", "content": f"<tool_call>{json.dumps(call)}</tool_call>"},
            {"role": "tool", "content": entry.gene},
            {"role": "assistant", "content": entry.gene},
        ]
    }


def answer_grader() -> dict[str, Any]:
    """The training reward: the reference gene appears in the final answer."""
    return {"type": "string_check", "name": "answer", "input": "{{ sample.output_text }}",
            "reference": "{{ item.gene }}", "operation": "ilike"}


_TOOL_USE_SOURCE = """\
import json


def grade(sample, item):
    for call in sample.get("output_tools") or []:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "")
        except ValueError:
            continue
        if (function.get("name") == "gene_lookup" and isinstance(arguments, dict)
                and isinstance(arguments.get("disease"), str)):
            return 1.0
    return 0.0
"""


def eval_grader() -> dict[str, Any]:
    """The answer grader as the score, with tool-use success (a well-formed `gene_lookup`
    call with a string `disease`) reported beside it as the `tool` sub-grader."""
    return {
        "type": "multi",
        "graders": {
            "answer": answer_grader(),
            "tool": {"type": "python", "name": "tool", "source": _TOOL_USE_SOURCE},
        },
        "calculate_output": "answer",
    }
