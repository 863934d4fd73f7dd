"""The findings task's endpoint grader server: the protocol, the reward, and its lifetime."""

from __future__ import annotations

import math

import httpx
import pytest

from openrft.examples.rare_disease.ranker_server import RankerGraderServer
from openrft.graders.base import run as grade

RANKED = ["G1", "G2", "G3", "G4"]


def terms(text: str) -> list[str]:
    """A stand-in matcher: each semicolon-separated phrase is one term."""
    return [p.strip() for p in text.split(";") if p.strip()]


def test_scores_rank_and_findings_through_the_endpoint_grader() -> None:
    seen: list[str] = []

    def rank_text(text: str) -> list[str]:
        seen.append(text)
        return RANKED

    with RankerGraderServer(rank_text, terms) as server:
        spec = server.grader(0.75)
        assert spec["type"] == "endpoint" and spec["url"].startswith("http://127.0.0.1:")
        assert spec["url"].endswith("/grade?reading_weight=0.75")
        # through OpenRFT's own endpoint grader, as training and evaluation call it:
        # rank 4 gives 4 ** -0.5 = 0.5; one of two answered terms is one of the reference's
        # three, so precision 1/2, recall 1/3, F1 = 2 * (1/6) / (5/6) = 0.4
        item = {"gene": "G4", "target": "big ears; short stature; clumsiness"}
        fourth = grade(spec, {"output_text": "big ears; seizures"}, item)
        assert fourth.ok and math.isclose(fourth.score, 0.25 * 0.5 + 0.75 * 0.4)
        exact = grade(spec, {"output_text": "clumsiness; short stature; big ears"},
                      {**item, "gene": "G1"})
        assert exact.ok and exact.score == 1.0
        missing = grade(spec, {"output_text": "nothing"}, {**item, "gene": "G9"})
        assert missing.ok and missing.score == 0.0
        reply = httpx.post(spec["url"], json={"sample": {}, "item": {**item, "gene": "G1"}})
        assert reply.json() == {"score": 0.25, "rank": 1, "findings_f1": 0.0}
        assert seen == ["big ears; seizures", "clumsiness; short stature; big ears", "nothing",
                        ""]  # no output_text: ""
        # a request without the reference gene or findings is refused, and says why
        assert httpx.post(spec["url"], json={"sample": {}, "item": {}}).status_code == 422
        no_target = httpx.post(spec["url"], json={"sample": {}, "item": {"gene": "G1"}})
        assert no_target.status_code == 422 and "target" in no_target.json()["detail"]
        bad = grade(spec, {"output_text": "x"}, {"disease": "D"})
        assert not bad.ok and bad.errors[0].code == "endpoint_grader_server_error"
    with pytest.raises(httpx.ConnectError):  # stopped with the block
        httpx.post(spec["url"], json={"sample": {}, "item": {"gene": "G1"}}, timeout=2)
    assert not server._thread.is_alive()


def test_one_server_grades_each_arm_with_its_own_weight() -> None:
    body = {"sample": {"output_text": "a; b"}, "item": {"gene": "G4", "target": "a; c"}}
    with RankerGraderServer(lambda t: RANKED, terms) as server:
        # weight 0: the rank alone, and no reference findings are needed
        rank_only = httpx.post(server.grader(0.0)["url"], json=body).json()
        no_target = httpx.post(server.grader(0.0)["url"],
                               json={**body, "item": {"gene": "G4"}}).json()
        # weight 1: the F1 alone; "a" of {a, b} against {a, c}: precision and recall 1/2
        reading = httpx.post(server.grader(1.0)["url"], json=body).json()
        too_big = httpx.post(server.grader(1.5)["url"], json=body)
    assert rank_only == {"score": 0.5, "rank": 4, "findings_f1": 0.5}
    assert no_target == {"score": 0.5, "rank": 4, "findings_f1": 0.0}
    assert reading == {"score": 0.5, "rank": 4, "findings_f1": 0.5}
    assert too_big.status_code == 422


def test_stops_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), RankerGraderServer(lambda t: RANKED,
                                                                       terms) as s:
        url = s.grader(0.75)["url"]
        raise RuntimeError("boom")
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json={"sample": {}, "item": {"gene": "G1"}}, timeout=2)
