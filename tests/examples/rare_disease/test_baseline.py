"""hypergeom_d against P(X >= x) computed by hand with binomial coefficients."""

from __future__ import annotations

import math

import pytest

from openrft.examples.rare_disease.baseline import HypergeomRanker
from openrft.examples.rare_disease.hpo_data import Disease, HPOData

# The mini ontology has 14 terms below Phenotypic abnormality; the closures of OMIM:100,
# OMIM:200 and OMIM:400 (annotated leaves plus their ancestors below HP:0000118) hold 8 each.
N, K = 14, 8


def tail(observed: int, n: int, population: int = N, k: int = K) -> float:
    total = math.comb(population, n)
    hits = range(observed, n + 1)
    return sum(math.comb(k, x) * math.comb(population - k, n - x) for x in hits) / total


def test_closure_sizes_by_hand(mini: HPOData) -> None:
    ranker = HypergeomRanker(mini, ["OMIM:100", "OMIM:200", "OMIM:400"])
    assert ranker.population == N
    assert ranker.closures["OMIM:100"] == {
        "HP:0000011", "HP:0000010", "HP:0000002", "HP:0000021", "HP:0000020",
        "HP:0000031", "HP:0000030", "HP:0000003",
    }
    assert all(len(c) == K for c in ranker.closures.values())


def test_scores_equal_hand_computed_tails(mini: HPOData) -> None:
    ranker = HypergeomRanker(mini, ["OMIM:100", "OMIM:200", "OMIM:400"])
    present = ["HP:0000010", "HP:0000042", "HP:0000033"]
    # OMIM:100 holds HP:0000010 only; OMIM:200 and OMIM:400 hold HP:0000010 and HP:0000042.
    assert ranker.disease_score("OMIM:100", present) == pytest.approx(-math.log(tail(1, 3)))
    assert ranker.disease_score("OMIM:200", present) == pytest.approx(-math.log(tail(2, 3)))
    assert tail(2, 3) == pytest.approx(224 / 364)
    scores = ranker.gene_scores(present)
    assert scores["GENEB"] == scores["NCBIGene:5"] > scores["GENEA"]


def test_ranking_and_cut(mini: HPOData) -> None:
    ranker = HypergeomRanker(mini, ["OMIM:100", "OMIM:200", "OMIM:400"])
    assert ranker.rank(["HP:0000011", "HP:0000031"], max_genes=3)[0] == "GENEA"
    assert ranker.disease_score("OMIM:200", ["HP:0000011", "HP:0000031"]) == 0.0
    assert len(ranker.rank(["HP:0000011"], max_genes=2)) == 2
    tied = ranker.rank(["HP:0000010", "HP:0000042", "HP:0000033"], max_genes=3)
    assert set(tied[:2]) == {"GENEB", "NCBIGene:5"} and tied[2] == "GENEA"


def test_gene_takes_the_best_of_its_diseases(mini: HPOData) -> None:
    """Two diseases of one gene: the gene scores the max of the two, not the sum."""
    data = HPOData(
        names=mini.names,
        parents=mini.parents,
        diseases={
            "D1": Disease("D1", "d1", ("G",), {"HP:0000011": 1.0}),
            "D2": Disease("D2", "d2", ("G",), {"HP:0000041": 1.0, "HP:0000021": 1.0}),
        },
    )
    ranker = HypergeomRanker(data, ["D1", "D2"])
    present = ["HP:0000041", "HP:0000021"]
    # D2's closure: 41, 40, 3, 21, 20, 2 (6 terms): both present terms hit it.
    assert ranker.gene_scores(present)["G"] == pytest.approx(-math.log(tail(2, 2, k=6)))
