"""The non-LLM pipeline: HPO names and synonyms string-matched in a report, then ranked.

What a bioinformatician builds without an LLM: a dictionary of every phenotypic-abnormality
term's name and EXACT hp.obo synonyms, matched greedily (longest phrase first, left to
right, on lower-cased words), and the matched terms fed to the classical hypergeometric
ranker. It does not understand negation: "There was no seizure" adds Seizure as a finding.
That blind spot, and nothing hidden, is what an LLM reading the report can improve on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from openrft.examples.rare_disease.baseline import HypergeomRanker
from openrft.examples.rare_disease.hpo_data import HPOData
from openrft.examples.rare_disease.reports import Synonym

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> tuple[str, ...]:
    """Lower-cased alphanumeric words: the unit both the dictionary and the report use."""
    return tuple(_WORD.findall(text.lower()))


class PhenotypeMatcher:
    """Finds HPO terms in free text by their names and EXACT synonyms."""

    def __init__(self, data: HPOData, synonyms: dict[str, list[Synonym]]) -> None:
        self.phrases: dict[tuple[str, ...], str] = {}
        # Names first, then synonyms; a phrase shared by two terms keeps the first by id,
        # so a term's own name always wins over another term's synonym.
        for term in sorted(data.names):
            if data.is_phenotypic_abnormality(term):
                self.phrases.setdefault(words(data.names[term]), term)
        for term in sorted(synonyms):
            if term in data.names and data.is_phenotypic_abnormality(term):
                for synonym in synonyms[term]:
                    self.phrases.setdefault(words(synonym.text), term)
        self.phrases.pop((), None)
        self.longest = max(len(p) for p in self.phrases)

    def find(self, text: str) -> list[str]:
        """Matched term ids in reading order (each once), longest match first."""
        tokens = words(text)
        found: list[str] = []
        i = 0
        while i < len(tokens):
            for length in range(min(self.longest, len(tokens) - i), 0, -1):
                term = self.phrases.get(tokens[i : i + length])
                if term is not None:
                    if term not in found:
                        found.append(term)
                    i += length
                    break
            else:
                i += 1
        return found


class TextPipeline:
    """Report -> matched terms -> hypergeom_d over the candidate diseases' genes."""

    def __init__(self, matcher: PhenotypeMatcher, ranker: HypergeomRanker) -> None:
        self.matcher = matcher
        self.ranker = ranker

    def rank(self, text: str, max_genes: int, seed: int = 0) -> list[str]:
        return self.ranker.rank(self.matcher.find(text), max_genes, seed=seed)


def rank_of(gene: str, genes: Sequence[str]) -> int | None:
    """1-based rank of `gene` in a list, None when absent."""
    return genes.index(gene) + 1 if gene in genes else None
