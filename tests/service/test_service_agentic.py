"""Agentic RFT through the official openai SDK: the endpoint grader in graders/run, and a
job with tool servers, max_episode_steps and an endpoint grader running to success.

The tool and grader servers are real HTTP servers on 127.0.0.1 started by the test. The
tiny random model rarely writes a tool call, so the job proves the wiring (episodes,
trace ids, metrics, redaction); executed calls in a training step are covered by
tests/rl/test_agentic_step.py.
"""

from __future__ import annotations

import io
import json

import httpx
import openai
import pytest
from service_flow import wait_for

from json_server import JsonServer, Reply

LOOKUP = [{"type": "function", "function": {
    "name": "lookup", "description": "Genes annotated to a phenotype.",
    "parameters": {"type": "object", "properties": {"phenotype": {"type": "string"}},
                   "required": ["phenotype"]}}}]
ROWS = [{"messages": [{"role": "user", "content": f"Which gene causes phenotype {i}?"}],
         "answer": f"G{i}", "tools": LOOKUP} for i in range(4)]


def upload(client: openai.OpenAI, rows: list[dict]) -> str:
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return client.files.create(file=("t.jsonl", io.BytesIO(content)), purpose="fine-tune").id


def test_endpoint_grader_in_graders_run(client: openai.OpenAI) -> None:
    with JsonServer(lambda r: Reply({"score": 0.5})) as server:
        result = client.fine_tuning.alpha.graders.run(
            grader={"type": "endpoint", "name": "remote", "url": server.url("/grade")},
            model_sample="G1", item={"answer": "G1"})
    assert result.reward == 0.5 and result.metadata.type == "endpoint"
    assert server.requests[0].body["sample"] == {"output_text": "G1"}
    with JsonServer(lambda r: Reply(raw='{"score": NaN}')) as server:
        result = client.fine_tuning.alpha.graders.run(
            grader={"type": "endpoint", "name": "remote", "url": server.url("/grade")},
            model_sample="G1", item={})
    errors = result.metadata.errors.model_dump()
    assert result.reward == 0.0 and errors["endpoint_grader_parse_error"] is True


def test_bad_tool_server_is_a_400_naming_the_field(client, tiny_model_dir) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=upload(client, ROWS),
            method={"type": "reinforcement", "reinforcement": {
                "grader": {"type": "endpoint", "name": "r", "url": "http://127.0.0.1:9/g"},
                "tools": [{"name": "lookup", "server_url": "file:///etc/passwd"}]}})
    assert "tools.0.server_url" in info.value.message


@pytest.mark.slow
def test_agentic_job_runs_to_success(live, worker, tiny_model_dir) -> None:
    client = live.client(live.key("alpha"))

    def grade(request):
        return Reply({"score": int(request.body["trace_id"][-1], 16) / 15})

    with JsonServer(lambda r: Reply({"output": "G1"})) as tools, JsonServer(grade) as grader:
        job = client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=upload(client, ROWS), seed=1,
            method={"type": "reinforcement", "reinforcement": {
                "grader": {"type": "endpoint", "name": "remote", "url": grader.url("/grade"),
                           "headers": {"authorization": "Bearer grader-secret"}},
                "tools": [{"name": "lookup", "server_url": tools.url("/lookup"),
                           "headers": {"x-api-key": "tool-secret"}}],
                "max_episode_steps": 3,
                "hyperparameters": {"n_epochs": 1, "batch_size": 2}}},
            extra_body={"expert": {"group_size": 2, "max_tokens": 8}},
        )
        done = wait_for(client, job.id)
        assert done.status == "succeeded", done.error
    auth = {"authorization": f"Bearer {client.api_key}"}
    shown = httpx.get(f"{live.base_url}/v1/fine_tuning/jobs/{job.id}", headers=auth).json()
    assert "tool-secret" not in json.dumps(shown) and "grader-secret" not in json.dumps(shown)
    assert shown["method"]["reinforcement"]["tools"][0]["headers"] == {"x-api-key": "***"}
    assert shown["method"]["reinforcement"]["max_episode_steps"] == 3
    # every rollout went to the grader with its episode's trace id and the row as item
    assert len(grader.requests) == 2 * 2 * 2  # 2 steps x batch 2 x group 2
    bodies = [r.body for r in grader.requests]
    assert all(b["trace_id"].startswith("trace_") for b in bodies)
    assert len({b["trace_id"] for b in bodies}) == len(bodies)
    assert all(b["sample"]["output_tools"] == [] or b["sample"]["output_tools"][0]["type"]
               == "function" for b in bodies)
    assert all(b["item"]["tools"] == LOOKUP for b in bodies)
    assert grader.requests[0].headers["authorization"] == "Bearer grader-secret"
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    steps = [e.data for e in events if e.type == "metrics"]
    assert len(steps) == 2
    # every executed call is counted: 4 rollouts per step, the tool never fails
    assert sum(d["tool_calls_per_rollout"] * 4 for d in steps) == len(tools.requests)
    for data in steps:
        for key in ("tool_errors", "tool_latency_s_mean", "tool_tokens_per_call",
                    "discarded_rollouts", "episode_turns_mean"):
            assert key in data
    metrics = httpx.get(f"{live.base_url}/v1/fine_tuning/jobs/{job.id}/metrics",
                        headers=auth).json()
    sample = metrics["samples"]["data"][0]
    assert sample["episode"][0]["role"] == "assistant" and sample["trace_id"].startswith("trace_")
