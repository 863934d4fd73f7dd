"""Statistics for arm comparisons on the same cases: hits, paired bootstrap CIs, per disease.

Arms are scored on the same held-out cases, so their difference is estimated per case
(paired, `openrft.eval.stats.paired_bootstrap`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from openrft.eval.stats import paired_bootstrap


def hits(ranks: Sequence[int | None], k: int | None) -> np.ndarray:
    """1.0 where the true gene is within the top k (k=None: anywhere), else 0.0."""
    return np.array([float(r is not None and (k is None or r <= k)) for r in ranks])


def per_disease(disease_ids: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    """Mean of `values` per disease (cases of one disease averaged)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for disease, value in zip(disease_ids, values, strict=True):
        groups[disease].append(float(value))
    return {d: float(np.mean(v)) for d, v in sorted(groups.items())}


COMPARISONS = (("rft", "base"), ("rft", "sft"), ("sft_rft", "base"), ("sft_rft", "sft"),
               ("rft", "pipeline"), ("sft_rft", "pipeline"))


def compare(ranks: Mapping[str, Sequence[int | None]], seed: int) -> dict[str, dict[str, float]]:
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
