"""The `endpoint` grader against a real loopback HTTP server: scores, limits, failures."""

from __future__ import annotations

import time

import pytest

from json_server import JsonServer, Reply
from openrft.errors import InvalidInput
from openrft.graders import base
from openrft.graders.endpoint import EndpointGraderImpl
from openrft.graders.schema import EndpointGrader
from openrft.remote_call import MAX_PAYLOAD_BYTES, EndpointLimits

FAST = EndpointLimits(timeout_s=0.5, backoff_s=0.01, max_backoff_s=0.01)
SAMPLE = {"output_text": "BRCA1"}
ITEM = {"answer": "BRCA1"}


def spec(url: str, **fields: object) -> EndpointGrader:
    body = {"type": "endpoint", "name": "remote", "url": url, **fields}
    return base.parse_grader(body)  # type: ignore[return-value]


def grade(server: JsonServer, limits: EndpointLimits = FAST, **fields: object):
    grader = EndpointGraderImpl(spec(server.url("/grade"), **fields), limits)
    try:
        return grader.grade(SAMPLE, ITEM)
    finally:
        grader.close()


def serve(*replies: Reply, default: Reply | None = None) -> JsonServer:
    queue = list(replies)
    return JsonServer(lambda _: queue.pop(0) if queue else (default or Reply({"score": 1})))


def codes(result: base.GradeResult) -> list[str]:
    return [e.code for e in result.errors]


def test_score_and_request_shape():
    with serve(Reply({"score": 0.75})) as server:
        result = base.run(
            {"type": "endpoint", "name": "remote", "url": server.url("/grade"),
             "headers": {"Authorization": "Bearer k1"}, "pass_threshold": 0.5},
            SAMPLE, ITEM,
        )
    assert result.score == 0.75 and result.ok
    assert result.metadata["passed"] is True and result.metadata["pass_threshold"] == 0.5
    request = server.requests[0]
    assert request.path == "/grade"
    assert request.headers["authorization"] == "Bearer k1"
    assert set(request.body) == {"sample", "item", "trace_id"}
    assert request.body["sample"] == SAMPLE and request.body["item"] == ITEM
    assert request.body["trace_id"].startswith("trace_")
    assert result.metadata["trace_id"] == request.body["trace_id"]


def test_an_episode_trace_id_is_sent_not_shown_as_sample_field():
    with serve(Reply({"score": 0})) as server:
        base.run({"type": "endpoint", "name": "r", "url": server.url()},
                 {**SAMPLE, "trace_id": "trace_abc"}, ITEM)
    assert server.requests[0].body["trace_id"] == "trace_abc"
    assert "trace_id" not in server.requests[0].body["sample"]


def test_hanging_endpoint_times_out_after_bounded_retries():
    with serve(default=Reply({"score": 1}, delay_s=30)) as server:
        started = time.perf_counter()
        result = grade(server, EndpointLimits(timeout_s=0.3, backoff_s=0.01, retries=3))
        elapsed = time.perf_counter() - started
    assert result.score == 0.0 and codes(result) == ["unresponsive_reward_error"]
    assert len(server.requests) == 4  # first try + 3 retries
    assert elapsed < 4 * 0.3 + 2.0


def test_5xx_storm_is_retried_three_times_then_flagged():
    with serve(default=Reply({"error": "down"}, status=503)) as server:
        result = grade(server)
    assert result.score == 0.0 and codes(result) == ["endpoint_grader_server_error"]
    assert "503" in result.errors[0].message and "after 4 attempts" in result.errors[0].message
    assert len(server.requests) == 4


def test_5xx_then_success_scores():
    with serve(Reply(status=500, raw="oops"), Reply(status=502, raw="oops"),
               Reply({"score": 0.25})) as server:
        result = grade(server)
    assert result.score == 0.25 and result.ok and result.metadata["attempts"] == 3


def test_4xx_is_not_retried():
    with serve(default=Reply({"error": "bad key"}, status=401)) as server:
        result = grade(server)
    assert result.score == 0.0 and codes(result) == ["endpoint_grader_server_error"]
    assert "401" in result.errors[0].message and len(server.requests) == 1


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (Reply(raw='{"score": 0.5', status=200), "not JSON"),
        (Reply(raw="<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
         "not JSON"),
        (Reply(raw='{"score": NaN}'), "not JSON"),
        (Reply({"score": "0.9"}), "str"),
        (Reply({"score": True}), "bool"),
        (Reply({"result": 1.0}), "missing"),
        (Reply([1.0]), "missing"),
        (Reply(raw='{"score": "' + "x" * (MAX_PAYLOAD_BYTES + 10) + '"}'), "limit"),
    ],
    ids=["invalid_json", "html", "nan", "string", "bool", "missing", "list", "oversized"],
)
def test_bad_answers_score_zero_with_parse_flag(reply: Reply, why: str):
    with serve(default=reply) as server:
        result = grade(server)
    assert result.score == 0.0 and codes(result) == ["endpoint_grader_parse_error"]
    assert why in result.errors[0].message
    assert len(server.requests) == 1


def test_oversized_request_is_never_sent():
    grader = EndpointGraderImpl(spec("http://127.0.0.1:9/unused"))
    try:
        result = grader.grade(SAMPLE, {"notes": "y" * MAX_PAYLOAD_BYTES})
    finally:
        grader.close()
    assert result.score == 0.0 and codes(result) == ["endpoint_grader_server_error"]
    assert "413" in result.errors[0].message


def test_rate_limit_spaces_concurrent_calls():
    arrivals: list[float] = []

    def respond(_):
        arrivals.append(time.monotonic())
        return Reply({"score": 1})

    with JsonServer(respond) as server:
        results = base.grade_batch(
            {"type": "endpoint", "name": "r", "url": server.url(), "rate_limit": 20},
            [SAMPLE] * 8, [ITEM] * 8, max_concurrency=8,
        )
    assert all(r.score == 1 for r in results)
    arrivals.sort()
    # 8 starts at 20/s: the last starts 7 * 50 ms = 0.35 s after the first at the client;
    # arrivals at the server jitter on a loaded machine (the first call also opens the
    # connection), so allow 0.1 s. Unlimited, all 8 arrive within a few milliseconds.
    assert arrivals[-1] - arrivals[0] >= 7 * 0.05 - 0.1


def test_endpoint_inside_multi():
    with serve(default=Reply({"score": 0.5})) as server:
        result = base.run(
            {"type": "multi", "name": "m", "calculate_output": "remote + exact",
             "graders": {
                 "remote": {"type": "endpoint", "name": "remote", "url": server.url()},
                 "exact": {"type": "string_check", "name": "exact",
                           "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
                           "operation": "eq"}}},
            SAMPLE, ITEM,
        )
    assert result.score == 1.5 and result.sub_scores == {"remote": 0.5, "exact": 1.0}


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"url": "ftp://x"}, "grader.url"),
        ({"url": "http://x", "timeout_s": 601}, "grader.timeout_s"),
        ({"url": "http://x", "rate_limit": 0}, "grader.rate_limit"),
        ({"url": "http://x", "extra": 1}, "grader.extra"),
    ],
)
def test_invalid_endpoint_grader_is_rejected(fields: dict, where: str):
    with pytest.raises(InvalidInput) as info:
        base.validate({"type": "endpoint", "name": "r", **fields})
    assert info.value.location == where


def test_nan_in_the_item_and_a_bad_host_are_flagged_not_raised():
    grader = EndpointGraderImpl(spec("http://127.0.0.1:9/g"), FAST)
    try:
        nan = grader.grade(SAMPLE, {"x": float("nan")})
    finally:
        grader.close()
    assert nan.score == 0.0 and codes(nan) == ["other_error"] and "JSON" in nan.errors[0].message
    bad_host = EndpointGraderImpl(spec("http://[::1/g"), FAST)
    try:
        unreachable = bad_host.grade(SAMPLE, ITEM)
    finally:
        bad_host.close()
    assert unreachable.score == 0.0 and codes(unreachable) == ["endpoint_grader_server_error"]
