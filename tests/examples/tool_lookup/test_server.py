"""The gene_lookup tool server over real HTTP on 127.0.0.1, alone and behind the executor."""

from __future__ import annotations

import json

import httpx
import pytest

from openrft.examples.tool_lookup.data import Entry
from openrft.examples.tool_lookup.server import GeneLookupServer
from openrft.rollout.tool_format import ToolCall
from openrft.rollout.tools import ToolExecutor, ToolServer

ENTRIES = [Entry("OMIM:1", "Bardet-Biedl syndrome 2", "BBS2"),
           Entry("OMIM:2", "Welander distal myopathy", "TIA1")]


@pytest.fixture
def server():
    with GeneLookupServer(ENTRIES) as running:
        yield running


def _post(server: GeneLookupServer, body: object) -> httpx.Response:
    return httpx.post(server.url, content=json.dumps(body), timeout=5)


def test_known_disease_answers_its_gene_in_any_case_and_spacing(server) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    for name in ("Bardet-Biedl syndrome 2", "  bardet-biedl   SYNDROME 2 "):
        reply = _post(server, {"type": "function_call", "call_id": "call_7", "name":
                               "gene_lookup", "arguments": json.dumps({"disease": name}),
                               "trace_id": "trace_1"})
        assert reply.status_code == 200
        assert reply.json() == {"type": "function_call_output", "call_id": "call_7",
                                "output": "BBS2"}
    assert server.calls == 2


@pytest.mark.parametrize(
    ("arguments", "output"),
    [
        ('{"disease": "Dravet syndrome"}', "no disease named 'Dravet syndrome'"),
        ('{"name": "Bardet-Biedl syndrome 2"}',
         'error: arguments must be {"disease": "<disease name>"}'),
        ("{not json", 'error: arguments must be {"disease": "<disease name>"}'),
        ('["Bardet-Biedl syndrome 2"]', 'error: arguments must be {"disease": "<disease name>"}'),
    ],
)
def test_bad_calls_get_an_answer_the_model_can_read(server, arguments, output) -> None:
    reply = _post(server, {"call_id": "c", "name": "gene_lookup", "arguments": arguments})
    assert reply.status_code == 200 and reply.json()["output"] == output


def test_a_body_that_is_not_json_is_a_400(server) -> None:
    reply = httpx.post(server.url, content=b"<html>", timeout=5)
    assert reply.status_code == 400 and "not JSON" in reply.json()["error"]


def test_the_episode_executor_gets_the_gene_back(server) -> None:
    executor = ToolExecutor([ToolServer(name="gene_lookup", server_url=server.url)])
    try:
        calls = [ToolCall("call_a", "gene_lookup", '{"disease": "Welander distal myopathy"}'),
                 ToolCall("call_b", "gene_lookup", '{"disease": "Bardet-Biedl syndrome 2"}')]
        results = executor.run([(call, "trace_x") for call in calls])
    finally:
        executor.close()
    assert [(r.output, r.error, r.discard) for r in results] == [("TIA1", None, None),
                                                                 ("BBS2", None, None)]


def test_stopping_frees_the_port() -> None:
    running = GeneLookupServer(ENTRIES).start()
    url = running.url
    running.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, content=b"{}", timeout=2)
