"""The findings task (issue 14's design (b)): the model reads, the classical ranker ranks.

The model is asked to list the findings the report says the patient *has*, in the
report's own words. The answer goes through the non-LLM pipeline's string matcher to HPO
terms, and hypergeom_d ranks every gene of the release on them. The reward mixes two
things the grader can check: the true gene's rank in that list (`rank ** -0.5` within
the top `LIST_LENGTH`, 0 beyond) and the F1 of the answer's HPO terms against the
reference findings' terms, mixed by a reading weight (`READING_WEIGHT` for both RFT
arms). The rank alone pays as much for copying the whole report (negated findings
included) as for reading it, and RFT found that optimum (variants 11-13 of
docs/rare_disease.md); the F1 term makes a copied negation cost precision. The ranking,
which a 135M model cannot learn (variants 9 and 9b), stays with the ranker.

The answer is a semicolon-separated list, not JSON: the matcher reads words either way,
and the list costs the small model fewer tokens and no format to get wrong.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from openrft.examples.rare_disease.report_task import SYSTEM
from openrft.examples.rare_disease.reports import Report

ASK = ("List every finding this patient has, in the report's own words, separated by "
       "semicolons. Leave out findings that were ruled out, denied or not observed.")
LIST_LENGTH = 20  # genes ranked and scored; top@max is top@20 for this task
READING_WEIGHT = 0.75  # the findings F1's share of the RFT reward (variants 14 and 21)


def findings_messages(report: str) -> list[dict[str, str]]:
    """The prompt: the report, then the instruction."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{report}\n{ASK}"}]


def findings_target(report: Report) -> str:
    """The SFT answer: the present (not negated) findings' words, in report order."""
    present = [m for m in report.mentions if not m["negated"]]
    text = report.text.lower()
    present.sort(key=lambda m: text.find(str(m["text"]).lower()))
    return "; ".join(str(m["text"]) for m in present)


def rank_reward(rank: int | None) -> float:
    """1 at rank 1, 0.71 at 2, 0.45 at 5, 0.22 at 20; 0 when the gene is not listed."""
    return 0.0 if rank is None else float(rank) ** -0.5


def findings_f1(found: Collection[str], reference: Collection[str]) -> float:
    """F1 of the answer's HPO terms against the reference findings' terms (as sets): the
    harmonic mean of precision and recall, 0 when nothing matches."""
    answer, gold = set(found), set(reference)
    hits = len(answer & gold)
    return 0.0 if hits == 0 else 2 * hits / (len(answer) + len(gold))


def findings_reward(rank: int | None, f1: float, reading_weight: float = READING_WEIGHT
                    ) -> float:
    """`(1 - w) * rank_reward(rank) + w * f1`, w the reading weight and `f1` the answer's
    `findings_f1`."""
    return (1 - reading_weight) * rank_reward(rank) + reading_weight * f1


def grader_spec(url: str, reading_weight: float) -> dict[str, Any]:
    """The endpoint grader a job uses to reach the ranker server's `/grade` at `url`, with
    the reward's reading weight as a query parameter."""
    return {"type": "endpoint", "name": "hypergeom_rank_and_findings",
            "url": f"{url}?reading_weight={reading_weight}"}
