"""Statistics for arm comparisons on the same cases: hits, paired bootstrap CIs, per disease.

Arms are scored on the same held-out cases, so their difference is estimated per case
(paired): resampling cases with replacement keeps each case's pair of outcomes together
(`scipy.stats.bootstrap(..., paired=True)`, percentile interval).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap


def hits(ranks: Sequence[int | None], k: int | None) -> np.ndarray:
    """1.0 where the true gene is within the top k (k=None: anywhere), else 0.0."""
    return np.array([float(r is not None and (k is None or r <= k)) for r in ranks])


@dataclass(frozen=True)
class PairedDifference:
    """mean(a - b) over cases and its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000,
    confidence: float = 0.95, seed: int = 0,
) -> PairedDifference:
    """Percentile bootstrap CI of mean(a - b), resampling cases (pairs stay together)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"need two equal-length 1-d samples of >= 2 cases, got {x.shape}, "
                         f"{y.shape}")
    if np.all(x - y == (x - y)[0]):  # no spread: every resample has the same mean
        value = float((x - y)[0])
        return PairedDifference(value, value, value, x.size)
    result = bootstrap(
        (x, y),
        lambda u, v, axis: np.mean(u - v, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return PairedDifference(float(np.mean(x - y)), float(interval.low), float(interval.high),
                            x.size)


def per_disease(disease_ids: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    """Mean of `values` per disease (cases of one disease averaged)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for disease, value in zip(disease_ids, values, strict=True):
        groups[disease].append(float(value))
    return {d: float(np.mean(v)) for d, v in sorted(groups.items())}


COMPARISONS = (("rft", "base"), ("rft", "sft"), ("sft_rft", "base"), ("sft_rft", "sft"),
               ("rft", "pipeline"), ("sft_rft", "pipeline"))


def compare(ranks: dict[str, Sequence[int | None]], seed: int) -> dict[str, dict[str, float]]:
    """Paired bootstrap CIs of the top@1 and top@max differences the targets name
    (`COMPARISONS`, those whose arms are present), keyed "a-b top@k"."""
    out: dict[str, dict[str, float]] = {}
    for a, b in COMPARISONS:
        if a in ranks and b in ranks:
            for k in (1, None):
                name = f"{a}-{b} top@{'max' if k is None else k}"
                out[name] = paired_bootstrap(hits(ranks[a], k), hits(ranks[b], k),
                                             seed=seed).as_dict()
    return out
