"""The real-model task: read a case report, re-rank the candidate genes a pipeline retrieved.

A 135M chat model cannot know 5,000 diseases' genes, so the prompt carries what a
clinician would have from a phenotype-matching tool: K candidate genes over the whole
gene space (the non-LLM pipeline's top K), each with the findings mentioned in the report
that its disease is annotated with, listed alphabetically (no scores, no order hint). The
model must read the report (synonyms, layperson words, negations such as "There was no
seizure", irrelevant sentences) and answer the genes best first. The grader reads the
candidate symbols in the answer in order of first mention (a gene named twice counts
once) and scores the true gene's rank: rank ** -0.5 (1 at rank 1, 0.45 at rank 5); an
answer that names candidates but not the true gene gets FORMAT_CREDIT (0.1), one that
names none 0. The untuned model names a candidate in few answers, so without that
partial credit most GRPO groups are all-zero and RFT from it does not move (measured).
"""

from __future__ import annotations

from typing import Any

SYSTEM = "You are a clinical geneticist."
QUESTION = ("Which gene is most likely? Reply with only the gene symbols, best first, "
            'e.g. "GENE1, GENE2, GENE3".')
FORMAT_CREDIT = 0.1  # naming candidates at all, without the true gene: a small reward
MAX_FINDINGS_SHOWN = 4  # findings listed per candidate beyond the shared ones

# Self-contained: the python grader runs this in a sandbox with no access to openrft.
GRADER_SOURCE = f'''
import re

FORMAT_CREDIT = {FORMAT_CREDIT}


def named_genes(text, candidates):
    """Candidate symbols in order of first mention, each once (whole words only)."""
    found = []
    for symbol in candidates:
        pattern = r"(?<![A-Za-z0-9-])" + re.escape(symbol) + r"(?![A-Za-z0-9-])"
        match = re.search(pattern, text, flags=re.IGNORECASE)
        if match:
            found.append((match.start(), symbol))
    return [symbol for _, symbol in sorted(found)]


def grade(sample, item):
    text = sample.get("output_text") or ""
    genes = named_genes(text, item["candidates"])
    if not genes:
        return {{"score": 0.0, "metadata": {{"rank": None, "listed": 0}}}}
    if item["gene"] not in genes:
        return {{"score": FORMAT_CREDIT, "metadata": {{"rank": None, "listed": len(genes)}}}}
    rank = genes.index(item["gene"]) + 1
    return {{"score": rank ** -0.5, "metadata": {{"rank": rank, "listed": len(genes)}}}}
'''.lstrip()

GRADER: dict[str, Any] = {"type": "python", "name": "candidate_rank", "source": GRADER_SOURCE}


def candidate_lines(candidates: list[str], findings: dict[str, list[str]]) -> list[str]:
    """The findings every candidate fits once, then per candidate (alphabetical: the order
    carries no hint) how many findings fit it and those that not all candidates share.
    Compact, so prompts stay short on a CPU; the report says which findings were negated."""
    if not candidates:
        return []
    common = set.intersection(*(set(findings.get(g, [])) for g in candidates))
    shared = [f for f in findings.get(candidates[0], []) if f in common]
    lines = [f"All fit: {'; '.join(shared)}"] if shared else []
    for gene in sorted(candidates):
        fit = findings.get(gene, [])
        own = [f for f in fit if f not in common][:MAX_FINDINGS_SHOWN]
        lines.append(f"{gene} ({len(fit)} fit)" + (f": {'; '.join(own)}" if own else ""))
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
