"""Hits and per-disease means against hand-computed values."""

from __future__ import annotations

from openrft.examples.rare_disease.stats import hits, per_disease


def test_hits_by_hand() -> None:
    ranks = [1, 3, None, 6, 2]
    assert hits(ranks, 1).tolist() == [1, 0, 0, 0, 0]
    assert hits(ranks, 5).tolist() == [1, 1, 0, 0, 1]
    assert hits(ranks, None).tolist() == [1, 1, 0, 1, 1]


def test_per_disease() -> None:
    assert per_disease(["D2", "D1", "D2", "D2"], [1, 0, 0, 1]) == {"D1": 0.0, "D2": 2 / 3}
