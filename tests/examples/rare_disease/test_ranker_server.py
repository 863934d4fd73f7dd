"""The findings task's endpoint grader server: the protocol, the reward, and its lifetime."""

from __future__ import annotations

import httpx
import pytest

from openrft.examples.rare_disease.ranker_server import RankerGraderServer
from openrft.graders.base import run as grade

RANKED = ["G1", "G2", "G3", "G4"]


def test_scores_the_true_genes_rank_through_the_endpoint_grader() -> None:
    seen: list[str] = []

    def rank_text(text: str) -> list[str]:
        seen.append(text)
        return RANKED

    with RankerGraderServer(rank_text) as server:
        spec = server.grader
        assert spec["type"] == "endpoint" and spec["url"].startswith("http://127.0.0.1:")
        # through OpenRFT's own endpoint grader, as training and evaluation call it
        fourth = grade(spec, {"output_text": "big ears; short stature"}, {"gene": "G4"})
        assert fourth.ok and fourth.score == 0.5  # 4 ** -0.5
        missing = grade(spec, {"output_text": "nothing"}, {"gene": "G9"})
        assert missing.ok and missing.score == 0.0
        reply = httpx.post(spec["url"], json={"sample": {}, "item": {"gene": "G1"}})
        assert reply.json() == {"score": 1.0, "rank": 1}
        assert seen == ["big ears; short stature", "nothing", ""]  # no output_text: ""
        # a request without the reference gene is refused, and the grader says so
        assert httpx.post(spec["url"], json={"sample": {}, "item": {}}).status_code == 422
        bad = grade(spec, {"output_text": "x"}, {"disease": "D"})
        assert not bad.ok and bad.errors[0].code == "endpoint_grader_server_error"
    with pytest.raises(httpx.ConnectError):  # stopped with the block
        httpx.post(spec["url"], json={"sample": {}, "item": {"gene": "G1"}}, timeout=2)
    assert not server._thread.is_alive()


def test_stops_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), RankerGraderServer(lambda t: RANKED) as s:
        url = s.grader["url"]
        raise RuntimeError("boom")
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json={"sample": {}, "item": {"gene": "G1"}}, timeout=2)
