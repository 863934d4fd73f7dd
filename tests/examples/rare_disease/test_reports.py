"""Case reports: synonyms read from hp.obo, negations negated, every finding written once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from openrft.examples.rare_disease.cases import CaseGenerator, CaseSettings
from openrft.examples.rare_disease.hpo_data import HPOData, eligible_diseases
from openrft.examples.rare_disease.reports import (
    IRRELEVANT,
    ReportWriter,
    Synonym,
    load_synonyms,
)

OBO = """format-version: 1.2

[Term]
id: HP:0000001
name: All
synonym: "Everything" EXACT layperson []
synonym: "Any" RELATED []
synonym: "ALL" EXACT abbreviation []
synonym: "Say \\"all\\"" EXACT [PMID:1]

[Term]
id: HP:0000002
name: Other
synonym: "Some other thing" BROAD layperson []
"""


def test_load_synonyms_keeps_exact_ones_and_the_layperson_flag(tmp_path: Path) -> None:
    (tmp_path / "hp.obo").write_text(OBO)
    assert load_synonyms(tmp_path) == {
        "HP:0000001": [Synonym("Everything", True), Synonym('Say "all"', False)]
    }


def test_real_synonyms_by_hand() -> None:
    """Read off hp.obo (2025-01-16) by hand: Tall stature and Seizure."""
    synonyms = load_synonyms()
    assert synonyms["HP:0000098"] == [
        Synonym("Accelerated linear growth", False),
        Synonym("Increased body height", True),
        Synonym("Increased linear growth", False),
        Synonym("Tall stature", True),
    ]
    # "Epilepsy" is a RELATED synonym of Seizure, so it is not used for it
    assert synonyms["HP:0001250"] == [
        Synonym("Epileptic seizure", False), Synonym("Seizures", False)
    ]


NEGATION = re.compile(r"^(There was no |No .* was observed\.|The parents deny |.* was ruled out\.)")


@pytest.fixture(scope="module")
def reports(real_hpo: HPOData):
    synonyms = load_synonyms()
    pool = eligible_diseases(real_hpo)
    generator = CaseGenerator(real_hpo, pool, seed=3, settings=CaseSettings(absent_probability=1))
    cases = generator.generate(pool[:400:4], 60, "t")
    writer = ReportWriter(real_hpo.names, synonyms, seed=3)
    return synonyms, cases, [writer.write(c) for c in cases]


def sentence_with(text: str, words: str) -> str:
    sentences = re.split(r"(?<=\.) ", text)
    found = [s for s in sentences if words.lower() in s.lower()]
    assert found, (words, text)
    return found[0]


def test_negated_findings_are_negated_and_present_ones_are_not(reports) -> None:
    _, cases, written = reports
    negated = 0
    for case, report in zip(cases, written, strict=True):
        assert {m["id"] for m in report.mentions if m["negated"]} == {
            t["id"] for t in case.absent
        }
        assert {m["id"] for m in report.mentions if not m["negated"]} == {
            t["id"] for t in case.present
        }
        for mention in report.mentions:
            sentence = sentence_with(report.text, str(mention["text"]))
            assert bool(NEGATION.match(sentence)) == mention["negated"], sentence
            negated += bool(mention["negated"])
    assert negated >= 60  # absent_probability=1: every case has 1-2 negated findings


def test_findings_use_names_or_exact_synonyms_layperson_included(
    reports, real_hpo: HPOData
) -> None:
    synonyms, _, written = reports
    used_layperson = used_name = 0
    for report in written:
        for mention in report.mentions:
            term, text = str(mention["id"]), str(mention["text"]).lower()
            lay = {s.text.lower() for s in synonyms.get(term, []) if s.layperson}
            allowed = {real_hpo.names[term].lower()}
            allowed |= {s.text.lower() for s in synonyms.get(term, [])}
            assert text in allowed
            used_layperson += text in lay
            used_name += text == real_hpo.names[term].lower()
    assert used_layperson > 20 and used_name > 20


def test_irrelevant_sentences_and_reproducibility(reports, real_hpo: HPOData) -> None:
    synonyms, cases, written = reports
    assert any(s in r.text for r in written for s in IRRELEVANT)
    again = ReportWriter(real_hpo.names, synonyms, seed=3)
    assert [again.write(c).text for c in cases] == [r.text for r in written]
