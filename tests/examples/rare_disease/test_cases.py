"""Case generator: reproducibility, disjoint splits, frequency-weighted sampling, and the
ontology constraints, checked against an independent reading of hp.obo."""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import cache

import pytest

from openrft.examples.rare_disease.cases import (
    CaseGenerator,
    CaseSettings,
    select_subset,
    split_diseases,
)
from openrft.examples.rare_disease.hpo_data import HPOData, default_data_dir, eligible_diseases

ONLY_FINDINGS = CaseSettings(min_present=1, max_present=1, imprecision=0.0, max_noise=0,
                             absent_probability=0.0)


def test_same_seed_same_cases_other_seed_other_cases(mini: HPOData) -> None:
    pool = ["OMIM:100", "OMIM:200", "OMIM:400"]
    first = [c.to_dict() for c in CaseGenerator(mini, pool, seed=3).generate(pool, 20, "t")]
    again = [c.to_dict() for c in CaseGenerator(mini, pool, seed=3).generate(pool, 20, "t")]
    other = [c.to_dict() for c in CaseGenerator(mini, pool, seed=4).generate(pool, 20, "t")]
    assert first == again
    assert first != other


def test_every_disease_once_per_pass(mini: HPOData) -> None:
    pool = ["OMIM:100", "OMIM:200", "OMIM:400"]
    cases = CaseGenerator(mini, pool, seed=0).generate(pool, 6, "t")
    assert Counter(c.disease_id for c in cases[:3]) == Counter(pool)
    assert Counter(c.disease_id for c in cases[3:]) == Counter(pool)


def test_splits_are_disjoint_cover_and_reproducible() -> None:
    ids = [f"OMIM:{i}" for i in range(100)]
    split = split_diseases(ids, 0.1, 0.3, seed=5)
    parts = [set(split.train), set(split.valid), set(split.heldout)]
    assert (len(parts[0]), len(parts[1]), len(parts[2])) == (60, 10, 30)
    assert set().union(*parts) == set(ids)
    assert sum(len(p) for p in parts) == 100  # pairwise disjoint
    assert split == split_diseases(ids, 0.1, 0.3, seed=5)
    assert split != split_diseases(ids, 0.1, 0.3, seed=6)
    assert select_subset(ids, 10, 1) == select_subset(list(reversed(ids)), 10, 1)


def test_first_finding_follows_annotated_frequency(mini: HPOData) -> None:
    """OMIM:200 has three unrelated terms with frequencies 3/4, 50% and 'Very frequent'
    (0.895): with one finding per case, P(term) = weight / 2.145."""
    n = 3000
    generator = CaseGenerator(mini, ["OMIM:200"], seed=11, settings=ONLY_FINDINGS)
    counts = Counter(c.present[0]["id"] for c in generator.generate(["OMIM:200"], n, "f"))
    for term, weight in {"HP:0000012": 0.75, "HP:0000032": 0.5, "HP:0000042": 0.895}.items():
        p = weight / 2.145
        assert abs(counts[term] - n * p) < 5 * math.sqrt(n * p * (1 - p)), (term, counts)


@cache
def obo_parents() -> dict[str, set[str]]:
    """A second, independent reading of hp.obo's is_a lines (not the loader's parser)."""
    parents: dict[str, set[str]] = {}
    current = None
    for line in (default_data_dir() / "hp.obo").read_text().splitlines():
        if match := re.match(r"^id: (HP:\d+)$", line):
            current = match.group(1)
            parents[current] = set()
        elif (match := re.match(r"^is_a: (HP:\d+)", line)) and current:
            parents[current].add(match.group(1))
    return parents


def obo_ancestors(term: str) -> set[str]:
    seen: set[str] = set()
    stack = list(obo_parents()[term])
    while stack:
        parent = stack.pop()
        if parent not in seen:
            seen.add(parent)
            stack.extend(obo_parents()[parent])
    return seen


def related(a: str, b: str) -> bool:
    return a == b or a in obo_ancestors(b) or b in obo_ancestors(a)


@pytest.fixture(scope="module")
def real_cases(real_hpo: HPOData) -> list:
    subset = select_subset(eligible_diseases(real_hpo), 60, seed=2)
    generator = CaseGenerator(real_hpo, subset, seed=9, settings=CaseSettings(imprecision=0.3))
    return generator.generate(subset, 240, "r")


def test_real_cases_respect_the_ontology(real_hpo: HPOData, real_cases: list) -> None:
    stats = Counter()
    for case in real_cases:
        disease = real_hpo.diseases[case.disease_id]
        annotated = set(disease.frequencies)
        present = [t["id"] for t in case.present]
        noise = {n["id"] for n in case.meta["noise"]}
        blurred = {parent: child for child, parent in case.meta["imprecise"]}
        assert case.gene == disease.genes[0]
        for child, parent in case.meta["imprecise"]:  # a true is_a parent of a disease term
            assert parent in obo_parents()[child] and child in annotated
            stats["imprecise"] += 1
        for term in present:
            if term in noise:  # unrelated to every annotation of the disease
                assert not any(related(term, a) for a in annotated), (case.case_id, term)
                stats["noise"] += 1
            else:
                assert term in annotated or blurred.get(term) in annotated
        for i, a in enumerate(present):  # non-redundant findings
            assert not any(related(a, b) for b in present[i + 1 :]), case.case_id
        for term in (t["id"] for t in case.absent):  # never contradicts a present finding
            assert not any(related(term, p) for p in present), case.case_id
            assert term in disease.excluded or not any(related(term, a) for a in annotated)
            stats["absent"] += 1
    assert stats["imprecise"] > 20 and stats["noise"] > 50 and stats["absent"] > 30, stats


def test_real_case_sizes(real_cases: list) -> None:
    from_disease = [len(c.present) - len(c.meta["noise"]) for c in real_cases]
    assert min(from_disease) >= 1 and max(from_disease) <= 8  # related draws are skipped
    assert sum(n >= 3 for n in from_disease) >= 0.9 * len(from_disease)
    assert all(len(c.meta["noise"]) <= 2 and len(c.absent) <= 2 for c in real_cases)
