"""Synthetic patients sampled from real HPO disease annotations, seeded and reproducible.

A case is what a clinician would write down: present findings sampled by their annotated
frequency, some recorded less precisely (a parent term), some unrelated to the disease
(noise), and a few findings explicitly absent. Training and held-out cases come from
disjoint diseases (`split_diseases`), so a model cannot pass by memorising cases.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from openrft.errors import InvalidInput
from openrft.examples.rare_disease.hpo_data import HPOData


@dataclass(frozen=True)
class CaseSettings:
    """How a case is sampled (defaults follow the research notes' generator)."""

    min_present: int = 3  # findings drawn from the disease, uniform in [min, max]
    max_present: int = 8
    imprecision: float = 0.15  # probability that a finding is recorded as a parent term
    max_noise: int = 2  # unrelated findings, uniform in [0, max]
    absent_probability: float = 0.5  # probability that the case lists absent findings
    max_absent: int = 2


@dataclass
class Case:
    """One synthetic patient; `meta` is for analysis only, never shown to a model."""

    case_id: str
    present: list[dict[str, str]]  # [{"id": "HP:...", "name": ...}], shuffled
    absent: list[dict[str, str]]
    gene: str
    disease_id: str
    disease_name: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DiseaseSplit:
    """Disjoint disease ids: train (cases for tuning), valid (choices), heldout (report)."""

    train: tuple[str, ...]
    valid: tuple[str, ...]
    heldout: tuple[str, ...]


def select_subset(pool: list[str], n_diseases: int, seed: int) -> list[str]:
    """A seeded sample of `n_diseases` disease ids from a sorted pool, returned sorted."""
    if n_diseases > len(pool):
        raise InvalidInput("n_diseases", f"{n_diseases} requested but only {len(pool)} eligible")
    return sorted(random.Random(seed).sample(sorted(pool), n_diseases))


def split_diseases(
    disease_ids: list[str], valid_fraction: float, heldout_fraction: float, seed: int
) -> DiseaseSplit:
    """Shuffle diseases with their own seed and cut them into three disjoint parts."""
    if valid_fraction < 0 or heldout_fraction <= 0 or valid_fraction + heldout_fraction >= 1:
        raise InvalidInput("split", "fractions must be >= 0 (heldout > 0) and sum below 1")
    shuffled = sorted(disease_ids)
    random.Random(seed).shuffle(shuffled)
    n_held = max(1, round(len(shuffled) * heldout_fraction))
    n_valid = round(len(shuffled) * valid_fraction)
    return DiseaseSplit(
        train=tuple(sorted(shuffled[n_held + n_valid :])),
        valid=tuple(sorted(shuffled[n_held : n_held + n_valid])),
        heldout=tuple(sorted(shuffled[:n_held])),
    )


def phenotype_terms(data: HPOData, disease_id: str) -> list[str]:
    """The disease's usable (phenotypic-abnormality, not organ-system) terms, sorted."""
    disease = data.diseases[disease_id]
    general = data.organ_system_terms
    return sorted(
        t for t in disease.frequencies if data.is_phenotypic_abnormality(t) and t not in general
    )


class CaseGenerator:
    """Draws cases for a fixed set of diseases from one `random.Random(seed)` stream.

    `noise_diseases` are where noise and absent findings come from (e.g. the whole demo
    subset); a candidate is rejected when it is related (equal, ancestor or descendant)
    to any annotation of the target disease or to a finding already in the case.
    """

    def __init__(
        self,
        data: HPOData,
        noise_diseases: list[str],
        seed: int,
        settings: CaseSettings | None = None,
    ) -> None:
        self.data = data
        self.settings = settings or CaseSettings()
        self.rng = random.Random(seed)
        self.seed = seed
        self.noise_diseases = sorted(noise_diseases)

    def generate(self, disease_ids: list[str], n_cases: int, prefix: str) -> list[Case]:
        """`n_cases` cases, cycling through the diseases in reshuffled passes."""
        if not disease_ids:
            raise InvalidInput("disease_ids", "no diseases to sample cases from")
        cases: list[Case] = []
        order: list[str] = []
        while len(cases) < n_cases:
            if not order:
                order = sorted(disease_ids)
                self.rng.shuffle(order)
            cases.append(self.case_for(order.pop(), f"{prefix}-{len(cases):05d}"))
        return cases

    def case_for(self, disease_id: str, case_id: str) -> Case:
        disease = self.data.diseases[disease_id]
        findings = self._sample_present(disease_id)
        findings, imprecise = self._blur(findings)
        noise = self._noise(disease_id, findings)
        present = findings + [n["id"] for n in noise]
        absent, absent_source = self._absent(disease_id, present)
        self.rng.shuffle(present)
        return Case(
            case_id=case_id,
            present=[self._named(t) for t in present],
            absent=[self._named(t) for t in absent],
            gene=disease.genes[0],
            disease_id=disease_id,
            disease_name=disease.name,
            meta={
                "imprecise": imprecise,
                "noise": noise,
                "absent_source": absent_source,
                "seed": self.seed,
            },
        )

    def _named(self, term: str) -> dict[str, str]:
        return {"id": term, "name": self.data.names[term]}

    def _sample_present(self, disease_id: str) -> list[str]:
        """Weighted sampling without replacement, skipping terms related to chosen ones."""
        weights = self.data.diseases[disease_id].frequencies
        candidates = phenotype_terms(self.data, disease_id)
        k = self.rng.randint(self.settings.min_present, self.settings.max_present)
        chosen: list[str] = []
        while candidates and len(chosen) < k:
            term = self.rng.choices(candidates, weights=[weights[t] for t in candidates])[0]
            candidates.remove(term)
            if not any(self.data.related(term, c) for c in chosen):
                chosen.append(term)
        return chosen

    def _blur(self, findings: list[str]) -> tuple[list[str], list[list[str]]]:
        """Replace some findings by one of their is_a parents (a less precise record)."""
        out, imprecise = list(findings), []
        for index, term in enumerate(findings):
            if self.rng.random() >= self.settings.imprecision:
                continue
            others = [t for j, t in enumerate(out) if j != index]
            parents = [
                p
                for p in self.data.parents.get(term, ())
                if p not in self.data.organ_system_terms
                and self.data.is_phenotypic_abnormality(p)
                and not any(self.data.related(p, o) for o in others)
            ]
            if parents:
                out[index] = self.rng.choice(parents)
                imprecise.append([term, out[index]])
        return out, imprecise

    def _unrelated(self, disease_id: str, term: str, case_terms: list[str]) -> bool:
        annotated = list(self.data.diseases[disease_id].frequencies)
        return not any(self.data.related(term, t) for t in annotated + case_terms)

    def _draw_foreign_term(self, disease_id: str, case_terms: list[str]) -> tuple[str, str] | None:
        """A term annotated to another disease (another gene), unrelated to this case."""
        gene = self.data.diseases[disease_id].genes[0]
        for _ in range(20):  # rejection sampling; give up quietly on a crowded case
            source = self.rng.choice(self.noise_diseases)
            if self.data.diseases[source].genes[0] == gene:
                continue
            terms = phenotype_terms(self.data, source)
            if not terms:
                continue
            term = self.rng.choice(terms)
            if self._unrelated(disease_id, term, case_terms):
                return term, source
        return None

    def _noise(self, disease_id: str, findings: list[str]) -> list[dict[str, str]]:
        noise: list[dict[str, str]] = []
        for _ in range(self.rng.randint(0, self.settings.max_noise)):
            drawn = self._draw_foreign_term(disease_id, findings + [n["id"] for n in noise])
            if drawn:
                noise.append({"id": drawn[0], "from": drawn[1]})
        return noise

    def _absent(self, disease_id: str, present: list[str]) -> tuple[list[str], list[str]]:
        """Absent findings: the disease's own NOT annotations first, then foreign terms."""
        if self.rng.random() >= self.settings.absent_probability:
            return [], []
        wanted = self.rng.randint(1, self.settings.max_absent)
        own = sorted(
            t
            for t in self.data.diseases[disease_id].excluded
            if t in self.data.names and not any(self.data.related(t, p) for p in present)
        )
        self.rng.shuffle(own)
        absent = own[:wanted]
        sources = [disease_id] * len(absent)
        while len(absent) < wanted:
            drawn = self._draw_foreign_term(disease_id, present + absent)
            if drawn is None:
                break
            absent.append(drawn[0])
            sources.append(drawn[1])
        return absent, sources
