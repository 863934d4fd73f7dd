"""The textbook covers every disease both ways, and its case reports are gradable answers."""

from __future__ import annotations

import json

from openrft.examples.rare_disease.base_model import domain_tokens
from openrft.examples.rare_disease.corpus import build_textbook, differential_genes
from openrft.examples.rare_disease.hpo_data import HPOData

POOL = ["OMIM:100", "OMIM:200", "OMIM:400"]
GENE = {"OMIM:100": "GENEA", "OMIM:200": "GENEB", "OMIM:400": "NCBIGene:5"}


def test_textbook_states_gene_links_both_ways(mini: HPOData) -> None:
    book = build_textbook(mini, POOL, set(mini.names), case_reports_per_disease=2, seed=0)
    for disease_id, gene in GENE.items():
        name = mini.diseases[disease_id].name
        assert f"{name} is caused by mutations in {gene}." in book.passages
        assert f"{gene} is the gene of {name}." in book.passages
    # Disease one's findings, most frequent first (A leaf one 1.0, B leaf one 0.5, A leaf
    # three 0.17), and the reverse direction for a finding shared by two diseases.
    assert "Disease one presents with A leaf one; B leaf one; A leaf three." in book.passages
    assert "A leaf two is seen in Disease two; Disease four." in book.passages
    assert "A leaf one is a kind of A mid one." in book.passages


def test_case_reports_cover_every_disease_and_grade_rank_one(mini: HPOData) -> None:
    book = build_textbook(mini, POOL, set(mini.names), case_reports_per_disease=2, seed=0)
    assert len(book.dialogs) == 6
    seen = []
    for user, assistant in book.dialogs:
        assert user["role"] == "user" and assistant["role"] == "assistant"
        reasoning, answer = assistant["content"].removeprefix("<think>").split("</think>")
        genes = json.loads(answer)["genes"]
        disease = next(d for d in POOL if mini.diseases[d].name in reasoning)
        assert genes[0] == GENE[disease] and len(genes) == len(set(genes))
        seen.append(disease)
    assert sorted(seen) == sorted(POOL * 2)


def test_differential_puts_the_gene_first_then_similar_diseases(mini: HPOData) -> None:
    assert differential_genes(mini, "OMIM:100", ["OMIM:400", "OMIM:200"], 2) == [
        "GENEA", "NCBIGene:5",
    ]
    assert differential_genes(mini, "OMIM:100", ["OMIM:400", "OMIM:200"], 9) == [
        "GENEA", "NCBIGene:5", "GENEB",
    ]


def test_domain_tokens_are_distinct_longest_first() -> None:
    assert domain_tokens(["Ptosis", "Short stature", "Ptosis", " ", "AR"]) == [
        "Short stature", "Ptosis", "AR",
    ]
