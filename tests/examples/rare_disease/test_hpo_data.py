"""The loader against a hand-written mini release (expected values worked out by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest

from openrft.errors import InvalidInput
from openrft.examples.rare_disease.hpo_data import (
    HPOData,
    eligible_diseases,
    load_hpo,
    parse_frequency,
)


def test_ontology_names_parents_and_ancestors(mini: HPOData) -> None:
    assert "HP:0000099" not in mini.names  # obsolete terms are dropped
    assert mini.names["HP:0000033"] == "B leaf three"
    assert mini.parents["HP:0000033"] == ("HP:0000020", "HP:0000030")
    assert mini.ancestors("HP:0000033") == {
        "HP:0000030", "HP:0000003", "HP:0000020", "HP:0000002", "HP:0000118", "HP:0000001",
    }
    assert mini.related("HP:0000010", "HP:0000011") and mini.related("HP:0000011", "HP:0000010")
    assert not mini.related("HP:0000011", "HP:0000012")
    assert mini.organ_system_terms == {"HP:0000118", "HP:0000002", "HP:0000003"}
    assert mini.is_phenotypic_abnormality("HP:0000041")
    assert not mini.is_phenotypic_abnormality("HP:0000006")
    assert mini.version == "hp/releases/test"


def test_annotations_frequencies_and_exclusions(mini: HPOData) -> None:
    one = mini.diseases["OMIM:100"]
    assert one.frequencies == {"HP:0000011": 1.0, "HP:0000021": 0.17, "HP:0000031": 0.5}
    assert one.excluded == {"HP:0000041", "HP:0000032"}  # 0/4 and NOT; inheritance dropped
    two = mini.diseases["OMIM:200"]
    assert two.frequencies == {"HP:0000012": 0.75, "HP:0000032": 0.5, "HP:0000042": 0.895}


def test_gene_links(mini: HPOData) -> None:
    assert mini.diseases["OMIM:100"].genes == ("GENEA",)
    assert mini.diseases["OMIM:300"].genes == ("GENEC", "GENED")
    assert mini.diseases["OMIM:400"].genes == ("NCBIGene:5",)


def test_eligible_is_omim_single_gene_with_enough_terms(mini: HPOData) -> None:
    assert eligible_diseases(mini, min_terms=3) == ["OMIM:100", "OMIM:200", "OMIM:400"]
    assert eligible_diseases(mini, min_terms=4) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", 0.5), ("-", 0.5), ("3/4", 0.75), ("12.5%", 0.125), ("HP:0040284", 0.025)],
)
def test_parse_frequency(raw: str, expected: float) -> None:
    assert parse_frequency(raw, "x") == pytest.approx(expected)


def test_bad_frequency_names_file_and_line(mini_dir: Path) -> None:
    path = mini_dir / "phenotype.hpoa"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("1/1", "7/3")  # line 3: after the comment and header lines
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput) as err:
        load_hpo(mini_dir)
    assert "phenotype.hpoa:3.frequency" in str(err.value) and "7/3" in str(err.value)


def test_missing_folder_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="hp.obo"):
        load_hpo(tmp_path / "nowhere")


def test_real_release_counts(real_hpo: HPOData) -> None:
    """Counts stated in the research notes (19,034 current terms; ~5,140 eligible)."""
    assert len(real_hpo.names) == 19034
    assert real_hpo.version == "hp/releases/2025-01-16"
    assert 5100 <= len(eligible_diseases(real_hpo)) <= 5200
