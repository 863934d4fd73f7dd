"""Tool-call parsing and the tool executor against a real loopback HTTP server."""

from __future__ import annotations

import json
import threading
import time

import pytest
from pydantic import ValidationError

from json_server import JsonServer, Reply
from openrft.remote_call import MAX_PAYLOAD_BYTES, EndpointLimits
from openrft.rollout.tool_format import ToolCall, parse_tool_calls
from openrft.rollout.tools import ToolExecutor, ToolServer

FAST = EndpointLimits(timeout_s=0.4, backoff_s=0.01, max_backoff_s=0.01)


# -- parsing: each model family's own format -------------------------------------------


def test_parse_qwen_hermes_single_object():
    calls = parse_tool_calls('Let me look.\n<tool_call>\n{"name": "lookup", "arguments": '
                             '{"q": "fever"}}\n</tool_call>')
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("lookup", {"q": "fever"})]
    assert calls[0].call_id.startswith("call_") and calls[0].error is None


def test_parse_smollm2_list_of_calls():
    calls = parse_tool_calls('<tool_call>[{"name": "a", "arguments": {"x": 1}}, '
                             '{"name": "b", "arguments": {}}]</tool_call>')
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("a", {"x": 1}), ("b", {})]
    assert calls[0].call_id != calls[1].call_id


def test_parse_llama3_bare_json_with_parameters():
    calls = parse_tool_calls('<|python_tag|>{"name": "lookup", "parameters": {"q": "x"}}')
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("lookup", {"q": "x"})]


@pytest.mark.parametrize("text", ["The answer is 4.", '{"answer": 4}', "", "{not json}"])
def test_plain_answers_have_no_calls(text: str):
    assert parse_tool_calls(text) == []


def test_unreadable_call_is_an_error_call():
    calls = parse_tool_calls("<tool_call>{name: lookup}</tool_call>")
    assert len(calls) == 1 and calls[0].error == "the tool call is not valid JSON"
    nameless = parse_tool_calls('<tool_call>{"arguments": {}}</tool_call>')
    assert nameless[0].error and nameless[0].name == ""


def test_as_openai_shape():
    call = ToolCall("call_1", "lookup", '{"q": 1}')
    assert call.as_openai() == {"id": "call_1", "type": "function",
                                "function": {"name": "lookup", "arguments": '{"q": 1}'}}


# -- the executor ----------------------------------------------------------------------


def executor(server: JsonServer, limits: EndpointLimits = FAST) -> ToolExecutor:
    servers = [ToolServer(name="lookup", server_url=server.url("/tool"),
                          headers={"x-api-key": "k"})]
    return ToolExecutor(servers, limits=limits)


def run_one(responder, call: ToolCall | None = None, limits: EndpointLimits = FAST):
    with JsonServer(responder) as server:
        tools = executor(server, limits)
        try:
            result = tools.call(call or ToolCall("call_1", "lookup", '{"q": "x"}'), "trace_t")
        finally:
            tools.close()
    return result, server


def test_success_posts_the_call_and_returns_output():
    result, server = run_one(lambda r: Reply({"type": "function_call_output",
                                              "call_id": r.body["call_id"], "output": "BRCA1"}))
    assert result.output == "BRCA1" and result.error is None and result.discard is None
    request = server.requests[0]
    assert request.body == {"type": "function_call", "call_id": "call_1", "name": "lookup",
                            "arguments": '{"q": "x"}', "trace_id": "trace_t"}
    assert request.headers["x-api-key"] == "k" and request.path == "/tool"


def test_json_output_is_serialised():
    result, _ = run_one(lambda r: Reply({"output": {"genes": ["A", "B"]}}))
    assert json.loads(result.output) == {"genes": ["A", "B"]}


def test_hanging_tool_discards_the_rollout_in_bounded_time():
    started = time.perf_counter()
    result, server = run_one(lambda r: Reply({"output": "late"}, delay_s=30))
    assert result.discard and "within 0.4 s" in result.discard and "4 attempts" in result.discard
    assert len(server.requests) == 4 and time.perf_counter() - started < 4 * 0.4 + 2


def test_5xx_storm_retried_three_times_then_discards():
    result, server = run_one(lambda r: Reply(raw="<h1>503</h1>", status=503))
    assert len(server.requests) == 4
    assert result.discard == "lookup: HTTP 503 from tool 'lookup' (after 4 attempts)"


def test_5xx_then_success_is_not_discarded():
    replies = [Reply(status=500, raw="x"), Reply({"output": "ok"})]
    result, server = run_one(lambda r: replies.pop(0))
    assert result.output == "ok" and result.discard is None and len(server.requests) == 2


def test_4xx_without_output_is_serialised_to_the_model():
    result, server = run_one(lambda r: Reply({"detail": "no such phenotype"}, status=404))
    assert len(server.requests) == 1 and result.discard is None
    shown = json.loads(result.output)["error"]
    assert shown.startswith("HTTP 404 from tool 'lookup'") and "no such phenotype" in shown
    assert "127.0.0.1" not in result.output and result.error == "client_error"


def test_4xx_with_output_shows_the_output():
    result, _ = run_one(lambda r: Reply({"output": "bad argument q"}, status=422))
    assert result.output == "bad argument q" and result.error == "client_error"


def test_oversized_output_shows_413_to_the_model():
    result, _ = run_one(lambda r: Reply(raw='{"output": "' + "x" * MAX_PAYLOAD_BYTES + '"}'))
    assert "413" in json.loads(result.output)["error"] and result.discard is None
    assert result.error == "response_too_large"


def test_oversized_arguments_are_not_sent_and_show_413():
    big = ToolCall("call_1", "lookup", json.dumps({"q": "y" * MAX_PAYLOAD_BYTES}))
    result, server = run_one(lambda r: Reply({"output": "never"}), big)
    assert server.requests == [] and "413" in json.loads(result.output)["error"]
    assert result.error == "request_too_large"


@pytest.mark.parametrize("raw", ["<html><body>Hi</body></html>", '{"output": "x"', "NaN"])
def test_non_json_answer_is_an_error_message(raw: str):
    result, server = run_one(lambda r: Reply(raw=raw, content_type="text/html"))
    assert result.error == "invalid_json" and "not JSON" in json.loads(result.output)["error"]
    assert len(server.requests) == 1 and result.discard is None


def test_unknown_tool_and_unreadable_call_never_reach_the_server():
    result, server = run_one(lambda r: Reply({"output": "x"}), ToolCall("call_1", "nope", "{}"))
    assert result.error == "unknown_tool" and "unknown tool 'nope'" in result.output
    bad = ToolCall("call_2", "", "{x", error="the tool call is not valid JSON")
    result, server2 = run_one(lambda r: Reply({"output": "x"}), bad)
    assert result.error == "invalid_call" and server.requests == server2.requests == []


def test_calls_run_concurrently():
    in_flight, peak, lock = [0], [0], threading.Lock()

    def respond(request):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.2)
        with lock:
            in_flight[0] -= 1
        return Reply({"output": request.body["call_id"]})

    with JsonServer(respond) as server:
        tools = executor(server)
        calls = [(ToolCall(f"call_{i}", "lookup", "{}"), f"trace_{i}") for i in range(6)]
        started = time.perf_counter()
        results = tools.run(calls)
        elapsed = time.perf_counter() - started
        tools.close()
    assert [r.output for r in results] == [f"call_{i}" for i in range(6)]
    assert peak[0] == 6 and elapsed < 6 * 0.2


def test_tool_server_spec_is_validated():
    with pytest.raises(ValidationError):
        ToolServer(name="lookup", server_url="file:///etc/passwd")
    with pytest.raises(ValidationError):
        ToolServer(name="bad name", server_url="http://x")
    with pytest.raises(ValidationError):
        ToolServer(name="ok", server_url="http://x", timeout_s=601)
