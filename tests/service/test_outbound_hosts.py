"""The admin's outbound allow-list: which hosts a job's tool servers and endpoint graders
may be on. Expected verdicts are written by hand from the rule in service/outbound.py."""

from __future__ import annotations

import io
import json

import openai
import pytest
from pydantic import ValidationError

from json_server import JsonServer, Reply
from openrft.service.outbound import grader_urls, host_allowed, outbound_urls
from openrft.service.settings import ServiceSettings

ROWS = [{"messages": [{"role": "user", "content": f"q{i}"}], "answer": f"G{i}"}
        for i in range(2)]


@pytest.mark.parametrize(("url", "allowed", "expected"), [
    ("http://tools.example.com/x", (), True),  # no list: any host
    ("http://tools.example.com/x", ("tools.example.com",), True),
    ("http://TOOLS.example.com./x", ("tools.example.com",), True),  # case, trailing dot
    ("http://tools.example.com:8443/x", ("tools.example.com",), True),  # any port
    ("http://a.tools.example.com/x", ("*.example.com",), True),
    ("http://example.com/x", ("*.example.com",), False),  # the bare domain is not a subdomain
    ("http://badexample.com/x", ("*.example.com",), False),
    ("http://169.254.169.254/latest", ("tools.example.com",), False),
    ("http://tools.example.com@10.0.0.1/x", ("tools.example.com",), False),  # userinfo trick
    ("file:///etc/passwd", ("tools.example.com",), False),
])
def test_host_rule_by_hand(url: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert host_allowed(url, allowed) is expected


def test_every_url_of_a_method_is_found_with_its_param_path() -> None:
    method = {"type": "reinforcement", "reinforcement": {
        "tools": [{"name": "a", "server_url": "http://t1/a"}, {"name": "b", "server_url": "http://t2/b"}],
        "grader": {"type": "multi", "name": "m", "calculate_output": "x + y", "graders": {
            "x": {"type": "endpoint", "name": "x", "url": "http://g1/x"},
            "y": {"type": "string_check", "name": "y", "input": "a", "reference": "b",
                  "operation": "eq"}}}}}
    assert list(outbound_urls(method)) == [
        ("method.reinforcement.tools[0].server_url", "http://t1/a"),
        ("method.reinforcement.tools[1].server_url", "http://t2/b"),
        ("method.reinforcement.grader.graders.x.url", "http://g1/x"),
    ]
    assert list(grader_urls({"type": "endpoint", "name": "e", "url": "http://g/"}, "grader")) \
        == [("grader.url", "http://g/")]


@pytest.mark.parametrize("bad", ["http://host", "host:80", "host/path", ""])
def test_an_entry_must_be_a_bare_host(tmp_path, bad: str) -> None:
    with pytest.raises(ValidationError, match="give a host name"):
        ServiceSettings(data_dir=tmp_path, outbound_hosts=(bad,))


def _upload(client: openai.OpenAI) -> str:
    content = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    return client.files.create(file=("t.jsonl", io.BytesIO(content)), purpose="fine-tune").id


def test_the_service_refuses_hosts_off_the_list_and_queues_nothing(
        make_server, tiny_model_dir) -> None:
    live = make_server(outbound_hosts=("127.0.0.1",))
    client = live.client(live.key("alpha"))
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=_upload(client),
            method={"type": "reinforcement", "reinforcement": {
                "grader": {"type": "endpoint", "name": "r", "url": "http://127.0.0.1:9/g"},
                "tools": [{"name": "lookup", "server_url": "http://metadata.internal/x"}]}})
    assert info.value.body["param"] == "method.reinforcement.tools[0].server_url"
    assert "'metadata.internal'" in info.value.message
    assert client.fine_tuning.jobs.list().data == []
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.alpha.graders.run(
            grader={"type": "endpoint", "name": "e", "url": "http://10.1.2.3/grade"},
            model_sample="G1", item={})
    assert info.value.body["param"] == "grader.url"
    with JsonServer(lambda r: Reply({"score": 0.75})) as server:  # on the list: called
        result = client.fine_tuning.alpha.graders.run(
            grader={"type": "endpoint", "name": "e", "url": server.url("/grade")},
            model_sample="G1", item={})
    assert result.reward == 0.75 and len(server.requests) == 1
