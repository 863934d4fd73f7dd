"""The classical bar: per-disease hypergeometric phenotype enrichment (`hypergeom_d`).

For each candidate disease d, the number of the patient's present terms that fall in d's
propagated annotation closure is compared with what n random terms would give:
score(d) = -ln P(X >= observed), X ~ Hypergeom(N = all phenotypic-abnormality terms,
K = |closure(d)|, n = #present). A gene scores the max over its candidate diseases. The
research notes measured this as the strongest classical scorer on these cases.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from scipy.stats import hypergeom

from openrft.examples.rare_disease.hpo_data import HPOData


class HypergeomRanker:
    """Ranks the genes of `disease_ids` for a set of present HPO terms."""

    def __init__(self, data: HPOData, disease_ids: Sequence[str]) -> None:
        self.data = data
        self.population = sum(1 for t in data.names if data.is_phenotypic_abnormality(t))
        self.closures = {
            d: frozenset(
                t
                for t in data.closure(frozenset(data.diseases[d].frequencies))
                if data.is_phenotypic_abnormality(t)
            )
            for d in sorted(disease_ids)
        }
        self.genes = {d: data.diseases[d].genes[0] for d in self.closures}

    def disease_score(self, disease_id: str, present: Sequence[str]) -> float:
        """-ln P(X >= observed) for one disease (0.0 when nothing matches)."""
        closure = self.closures[disease_id]
        observed = sum(1 for t in present if t in closure)
        if observed == 0:
            return 0.0
        log_p = hypergeom.logsf(observed - 1, self.population, len(closure), len(present))
        return float(-log_p)

    def gene_scores(self, present: Sequence[str]) -> dict[str, float]:
        scores: dict[str, float] = {}
        for disease_id, gene in self.genes.items():
            score = self.disease_score(disease_id, present)
            scores[gene] = max(score, scores.get(gene, float("-inf")))
        return scores

    def rank(self, present: Sequence[str], max_genes: int, seed: int = 0) -> list[str]:
        """The top `max_genes` genes, best first; exact ties broken by a seeded shuffle."""
        scores = self.gene_scores(present)
        genes = sorted(scores)
        random.Random(seed).shuffle(genes)  # tie-break: random but reproducible
        genes.sort(key=lambda g: -scores[g])  # stable sort keeps the shuffled tie order
        return genes[:max_genes]
