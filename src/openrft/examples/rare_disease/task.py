"""The task as a model sees it: the prompt, the JSON answer schema, and the rank grader.

Rows are OpenRFT dataset rows: `messages` (the prompt) plus reference fields (`gene`,
`disease_id`, `case_id`) that the grader reads as `item.*`. The grader is an OpenAI
`python` grader whose source is self-contained (it runs in a sandbox) and reports the
true gene's rank in its metadata, so `openrft eval` prints top@1 / top@5 / top@max.
"""

from __future__ import annotations

import json
from typing import Any

from openrft.examples.rare_disease.cases import Case

MAX_GENES = 10  # the longest list a model may answer; longer lists are penalised
INVALID_PENALTY = -0.5  # unparseable / wrong-shape / over-long answers score this
INSTRUCTION = "Rank the most likely causal genes."

RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "gene_ranking",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "genes": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_GENES}
            },
            "required": ["genes"],
            "additionalProperties": False,
        },
    },
}

# Self-contained: the python grader runs this in a sandbox with no access to openrft.
GRADER_SOURCE = f'''
import json

MAX_GENES = {MAX_GENES}
INVALID = {INVALID_PENALTY}


def _genes(sample):
    data = sample.get("output_json")
    if data is None:
        try:
            data = json.loads(sample.get("output_text") or "")
        except ValueError:
            return None
    if not isinstance(data, dict) or not isinstance(data.get("genes"), list):
        return None
    genes = data["genes"]
    if not all(isinstance(g, str) for g in genes):
        return None
    return [g.strip().upper() for g in genes]


def grade(sample, item):
    genes = _genes(sample)
    if genes is None:
        return {{"score": INVALID, "metadata": {{"rank": None, "invalid": "not a gene list"}}}}
    if len(genes) > MAX_GENES:
        return {{"score": INVALID, "metadata": {{"rank": None, "invalid": "too many genes"}}}}
    genes = list(dict.fromkeys(genes))  # a gene listed twice counts once, at its first place
    target = str(item["gene"]).strip().upper()
    if target not in genes:
        return {{"score": 0.0, "metadata": {{"rank": None, "listed": len(genes)}}}}
    rank = genes.index(target) + 1
    return {{"score": rank ** -0.5, "metadata": {{"rank": rank, "listed": len(genes)}}}}
'''.lstrip()

GRADER: dict[str, Any] = {
    "type": "python",
    "name": "gene_rank",
    "source": GRADER_SOURCE,
}


def user_prompt(present: list[str], absent: list[str]) -> str:
    """Present and absent phenotypes by name, one line each, then the instruction."""
    lines = ["Present: " + "; ".join(present)]
    if absent:
        lines.append("Absent: " + "; ".join(absent))
    lines.append(INSTRUCTION)
    return "\n".join(lines)


def case_messages(case: Case) -> list[dict[str, str]]:
    present = [t["name"] for t in case.present]
    absent = [t["name"] for t in case.absent]
    return [{"role": "user", "content": user_prompt(present, absent)}]


def case_row(case: Case) -> dict[str, Any]:
    """An OpenRFT dataset row: the prompt plus the reference fields the grader reads."""
    return {
        "messages": case_messages(case),
        "gene": case.gene,
        "disease_id": case.disease_id,
        "disease_name": case.disease_name,
        "case_id": case.case_id,
    }


def reasoning_text(disease_name: str, gene: str) -> str:
    """The short reasoning a reference answer gives: the diagnosis and its gene."""
    return f"The findings fit {disease_name}, caused by {gene}."


def answer_json(genes: list[str]) -> str:
    """Compact JSON: `","` between genes is one token for the BPE, so lists stay short."""
    return json.dumps({"genes": genes}, separators=(",", ":"))


def assistant_text(disease_name: str, genes: list[str]) -> str:
    """A full reference completion: reasoning in <think>, then the JSON answer."""
    return f"<think>{reasoning_text(disease_name, genes[0])}</think>{answer_json(genes)}"
