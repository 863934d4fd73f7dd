"""The "textbook": what the base model reads before it ever sees a training case.

A real LLM has read the literature: which gene causes which disease, what each disease
looks like, and case reports with a differential diagnosis. This module writes the same
kind of text from the HPO annotations for every disease of the chosen subset (held-out
diseases included, as the literature covers diseases that no training case shows):

* gene statements, both ways ("D is caused by mutations in G", "G is the gene of D");
* clinical descriptions ("D presents with ...", frequent findings first) and the reverse
  ("finding t is seen in D1; D2");
* ontology statements for the terms used ("t is a kind of parent");
* case reports in the task's chat format (clean: findings from the disease only, no
  imprecise, unrelated or absent findings), answering with the disease's gene first and
  the genes of the most similar diseases after it, so the base model can answer at all.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from openrft.examples.rare_disease.cases import CaseGenerator, CaseSettings, phenotype_terms
from openrft.examples.rare_disease.hpo_data import HPOData
from openrft.examples.rare_disease.task import assistant_text, case_messages

CLEAN_CASES = CaseSettings(imprecision=0.0, max_noise=0, absent_probability=0.0)


@dataclass
class Textbook:
    """Plain passages (LM text) and chat dialogs (rendered with the chat template)."""

    passages: list[str]
    dialogs: list[list[dict[str, str]]]


def similar_diseases(data: HPOData, disease_ids: list[str]) -> dict[str, list[str]]:
    """For each disease, the others ordered by Jaccard similarity of annotation closures."""
    closures = {d: data.closure(frozenset(phenotype_terms(data, d))) for d in disease_ids}
    ordered: dict[str, list[str]] = {}
    for d in sorted(disease_ids):
        others = [o for o in sorted(disease_ids) if o != d]
        others.sort(key=lambda o: -len(closures[d] & closures[o]) / len(closures[d] | closures[o]))
        ordered[d] = others
    return ordered


def differential_genes(
    data: HPOData, disease_id: str, similar: list[str], length: int
) -> list[str]:
    """The disease's gene first, then distinct genes of the most similar diseases."""
    genes = [data.diseases[disease_id].genes[0]]
    for other in similar:
        if len(genes) >= length:
            break
        gene = data.diseases[other].genes[0]
        if gene not in genes:
            genes.append(gene)
    return genes


def _description_passages(data: HPOData, disease_id: str, rng: random.Random) -> list[str]:
    disease = data.diseases[disease_id]
    name, gene = disease.name, disease.genes[0]
    terms = phenotype_terms(data, disease_id)
    by_frequency = sorted(terms, key=lambda t: -disease.frequencies[t])
    passages = [
        f"{name} is caused by mutations in {gene}.",
        f"{gene} is the gene of {name}.",
    ]
    for start in range(0, len(by_frequency), 8):
        chunk = [data.names[t] for t in by_frequency[start : start + 8]]
        passages.append(f"{name} presents with " + "; ".join(chunk) + ".")
    shuffled = [data.names[t] for t in terms]
    rng.shuffle(shuffled)
    passages.append(f"Findings in {name} ({gene}) include " + "; ".join(shuffled[:10]) + ".")
    return passages


def _reverse_passages(data: HPOData, disease_ids: list[str]) -> list[str]:
    seen_in: dict[str, list[str]] = defaultdict(list)
    for d in disease_ids:
        for t in phenotype_terms(data, d):
            seen_in[t].append(data.diseases[d].name)
    return [
        f"{data.names[t]} is seen in " + "; ".join(names[:6]) + "."
        for t, names in sorted(seen_in.items())
    ]


def _ontology_passages(data: HPOData, terms: set[str]) -> list[str]:
    return [
        f"{data.names[t]} is a kind of {data.names[p]}."
        for t in sorted(terms)
        for p in data.parents.get(t, ())
        if p in terms
    ]


def build_textbook(
    data: HPOData,
    disease_ids: list[str],
    vocabulary_terms: set[str],
    *,
    case_reports_per_disease: int = 4,
    seed: int = 0,
) -> Textbook:
    """The whole textbook for `disease_ids`, deterministic for a seed."""
    rng = random.Random(seed)
    ids = sorted(disease_ids)
    passages: list[str] = []
    for d in ids:
        passages.extend(_description_passages(data, d, rng))
    passages.extend(_reverse_passages(data, ids))
    passages.extend(_ontology_passages(data, vocabulary_terms))
    similar = similar_diseases(data, ids)
    generator = CaseGenerator(data, ids, seed=seed + 1, settings=CLEAN_CASES)
    dialogs = []
    for case in generator.generate(ids, case_reports_per_disease * len(ids), "textbook"):
        length = rng.randint(3, 8)
        genes = differential_genes(data, case.disease_id, similar[case.disease_id], length)
        dialogs.append(
            case_messages(case)
            + [{"role": "assistant", "content": assistant_text(case.disease_name, genes)}]
        )
    rng.shuffle(passages)
    return Textbook(passages=passages, dialogs=dialogs)
