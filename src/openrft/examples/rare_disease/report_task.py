"""The real-model task: read a case report, re-rank the candidate genes a pipeline retrieved.

A 135M chat model cannot know 5,000 diseases' genes, so the prompt carries what a
clinician would have from a phenotype-matching tool: K candidate genes over the whole
gene space (the non-LLM pipeline's top K), each with the findings mentioned in the report
that its disease is annotated with, listed alphabetically (no scores, no order hint). The
model must read the report (synonyms, layperson words, negations such as "There was no
seizure", irrelevant sentences) and answer the genes best first. The grader reads the
candidate symbols in the answer in order of first mention (a gene named twice counts
once) and scores the true gene's rank: rank ** -0.5, 0 when it is not named.
"""

from __future__ import annotations

from typing import Any

SYSTEM = "You are a clinical geneticist."
QUESTION = "Which gene is most likely? Answer with gene symbols, best first, separated by commas."
MAX_FINDINGS_SHOWN = 6  # findings listed per candidate

# Self-contained: the python grader runs this in a sandbox with no access to openrft.
GRADER_SOURCE = '''
import re


def named_genes(text, candidates):
    """Candidate symbols in order of first mention, each once (whole words only)."""
    found = []
    for symbol in candidates:
        match = re.search(r"(?<![A-Za-z0-9-])" + re.escape(symbol) + r"(?![A-Za-z0-9-])",
                          text, flags=re.IGNORECASE)
        if match:
            found.append((match.start(), symbol))
    return [symbol for _, symbol in sorted(found)]


def grade(sample, item):
    text = sample.get("output_text") or ""
    genes = named_genes(text, item["candidates"])
    if not genes:
        return {"score": 0.0, "metadata": {"rank": None, "listed": 0}}
    if item["gene"] not in genes:
        return {"score": 0.0, "metadata": {"rank": None, "listed": len(genes)}}
    rank = genes.index(item["gene"]) + 1
    return {"score": rank ** -0.5, "metadata": {"rank": rank, "listed": len(genes)}}
'''.lstrip()

GRADER: dict[str, Any] = {"type": "python", "name": "candidate_rank", "source": GRADER_SOURCE}


def candidate_lines(candidates: list[str], findings: dict[str, list[str]]) -> list[str]:
    """`GENE (n fit): finding; finding` per candidate, alphabetical (the order carries no
    hint; the count and the findings do, and the report says which were negated)."""
    lines = []
    for gene in sorted(candidates):
        fit = findings.get(gene, [])
        shown = "; ".join(fit[:MAX_FINDINGS_SHOWN]) if fit else "none"
        lines.append(f"{gene} ({len(fit)} fit): {shown}")
    return lines


def report_messages(
    report: str, candidates: list[str], findings: dict[str, list[str]]
) -> list[dict[str, str]]:
    body = "\n".join(
        [report, "Candidate genes and the reported findings that fit them:",
         *candidate_lines(candidates, findings), QUESTION]
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


def reference_answer(gene: str, pipeline_order: list[str]) -> str:
    """The SFT target: the true gene first, then the other candidates in pipeline order."""
    return ", ".join([gene, *(g for g in pipeline_order if g != gene)])
