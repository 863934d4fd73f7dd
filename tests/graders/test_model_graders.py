"""score_model / label_model against a real loopback chat-completions server and a local model.

Expected values come from the documented rules (docs/model_graders.md) worked by hand,
not from the implementation's output.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from chat_server import ChatServer, ScriptedReply

from openrft.errors import InvalidInput
from openrft.graders import build_grader, run
from openrft.graders.base import BaseGrader, GradeResult
from openrft.graders.judge_backends import JudgeRequest, JudgeSettings
from openrft.graders.local_judge import LocalJudge
from openrft.graders.model_graders import LabelModelGraderImpl, ScoreModelGraderImpl
from openrft.graders.schema import LabelModelGrader, ScoreModelGrader

ITEM = {"reference": "Paris", "question": "Capital of France?"}
SAMPLE = {"output_text": "Lyon"}


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as chat_server:
        yield chat_server


@pytest.fixture
def settings(server: ChatServer) -> JudgeSettings:
    return JudgeSettings(
        base_url=server.base_url, api_key="sk-test-key", timeout_s=2.0, backoff_s=0.01
    )


def score_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "score_model",
        "name": "judge",
        "model": "judge-model",
        "input": [
            {"role": "system", "content": "Grade the answer. Reference: {{ item.reference }}"},
            {"role": "user", "content": "Answer: {{ sample.output_text }}"},
        ],
    }
    spec.update(overrides)
    return spec


def label_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "label_model",
        "name": "labeler",
        "model": "judge-model",
        "input": [{"role": "user", "content": "Is {{ sample.output_text }} right?"}],
        "labels": ["correct", "incorrect", "partially correct"],
        "passing_labels": ["correct"],
    }
    spec.update(overrides)
    return spec


def score_grader(settings: JudgeSettings, **overrides: Any) -> ScoreModelGraderImpl:
    return ScoreModelGraderImpl(ScoreModelGrader.model_validate(score_spec(**overrides)), settings)


def label_grader(settings: JudgeSettings, **overrides: Any) -> LabelModelGraderImpl:
    return LabelModelGraderImpl(LabelModelGrader.model_validate(label_spec(**overrides)), settings)


def grade_with_reply(grader: BaseGrader, server: ChatServer, reply: ScriptedReply) -> GradeResult:
    server.enqueue(reply)
    try:
        return grader.grade(SAMPLE, ITEM)
    finally:
        grader.close()


def error_codes(result: GradeResult) -> list[str]:
    return [error.code for error in result.errors]


# --- the request the endpoint receives ---------------------------------------------------


def test_request_carries_model_rendered_messages_sampling_and_key(server, settings):
    grader = score_grader(
        settings,
        input=[
            {"role": "developer", "content": "Reference: {{ item.reference }}."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Q: {{ item.question }} "},
                    {"type": "input_text", "text": "A: {{ sample.output_text }}"},
                ],
            },
        ],
        sampling_params={
            "temperature": 0.2,
            "top_p": 0.9,
            "seed": 7,
            "max_completions_tokens": 99,
            "reasoning_effort": "low",
        },
    )
    result = grade_with_reply(grader, server, ScriptedReply('{"result": 0.5}'))
    assert result.score == 0.5 and result.ok

    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-key"
    body = request.body
    assert body["model"] == "judge-model"
    system, user = body["messages"]
    # developer -> system; the format instruction follows the grader's own text
    assert system["role"] == "system"
    assert system["content"].startswith("Reference: Paris.\n\n")
    assert '"result"' in system["content"] and "from 0 to 1" in system["content"]
    assert user == {"role": "user", "content": "Q: Capital of France? A: Lyon"}
    assert body["temperature"] == 0.2 and body["top_p"] == 0.9 and body["seed"] == 7
    assert body["max_tokens"] == 99 and body["reasoning_effort"] == "low"
    assert "max_completions_tokens" not in body and "response_format" not in body


def test_instruction_becomes_first_system_message_when_grader_has_none(server, settings):
    grader = label_grader(settings)
    grade_with_reply(grader, server, ScriptedReply('{"label": "correct"}'))
    messages = server.requests[0].body["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    for label in ("correct", "incorrect", "partially correct"):
        assert f'"{label}"' in messages[0]["content"]
    assert messages[1]["content"] == "Is Lyon right?"


def test_no_authorization_header_without_a_key(server):
    grader = score_grader(JudgeSettings(base_url=server.base_url, api_key=None))
    grade_with_reply(grader, server, ScriptedReply("1"))
    assert "authorization" not in server.requests[0].headers


def test_structured_output_sends_json_schemas(server):
    settings = JudgeSettings(base_url=server.base_url, structured_output=True)
    grade_with_reply(score_grader(settings), server, ScriptedReply('{"result": 1}'))
    grade_with_reply(label_grader(settings), server, ScriptedReply('{"label": "correct"}'))
    score_format, label_format = (r.body["response_format"] for r in server.requests)
    assert score_format["type"] == "json_schema"
    score_schema = score_format["json_schema"]["schema"]
    assert score_schema["properties"]["result"] == {"type": "number"}
    assert set(score_schema["required"]) == {"steps", "result"}
    label_schema = label_format["json_schema"]["schema"]
    assert label_schema["properties"]["label"]["enum"] == [
        "correct",
        "incorrect",
        "partially correct",
    ]


def test_missing_item_field_is_invalid_variable_without_a_request(server, settings):
    result = score_grader(settings).grade(SAMPLE, {"question": "no reference here"})
    assert result.score == 0.0 and error_codes(result) == ["invalid_variable_error"]
    assert "reference" in result.errors[0].message
    assert server.requests == []


# --- score parsing, clamping, thresholds -------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "score_range", "expected"),
    [
        ('{"steps": [{"description": "d", "conclusion": "c"}], "result": 0.8}', None, 0.8),
        ('```json\n{"score": 0.25}\n```', None, 0.25),
        ('Some thoughts first.\n{"result": 0.4, "steps": []}\nDone.', None, 0.4),
        ("0.6", None, 0.6),
        ('"0.35"', None, 0.35),
        ("Score: 0.9", None, 0.9),
        ("Reasoning... **Final score:** 3/4", None, 0.75),
        ("7/10", None, 0.7),
        ('{"result": "7/10"}', None, 0.7),
        ("4/5", [1, 5], 4.0),  # denominator is the top of the range: "4 out of 5"
        ("1/2", [-1, 1], 0.0),  # otherwise mapped linearly: -1 + 0.5 * 2
        ('{"result": 12}', [0, 10], 10.0),  # clamped to the range top
        ("-3", [-1, 1], -1.0),  # clamped to the range bottom
        ("Score: 1.5", None, 1.0),
        ("The rating is 4", [0, 10], 4.0),
        ("result = 3", [0, 10], 3.0),
        ("8.", [0, 10], 8.0),
        ("Score: 0.2. Reconsidering, final score: 0.6", None, 0.6),  # the last labelled one
    ],
)
def test_score_reply_shapes(server, settings, reply, score_range, expected):
    overrides = {"range": score_range} if score_range else {}
    result = grade_with_reply(score_grader(settings, **overrides), server, ScriptedReply(reply))
    assert result.ok, result.errors
    assert result.score == pytest.approx(expected)


def test_score_metadata_records_steps_raw_result_usage_and_model(server, settings):
    reply = '{"steps": [{"description": "checked", "conclusion": "wrong city"}], "result": 1.7}'
    result = grade_with_reply(score_grader(settings), server, ScriptedReply(reply))
    assert result.score == 1.0
    meta = result.metadata
    assert meta["result"] == 1.7 and meta["range"] == [0.0, 1.0]
    assert meta["steps"] == [{"description": "checked", "conclusion": "wrong city"}]
    assert meta["judge_reply"] == reply and meta["judge_backend"] == "http"
    assert meta["sampled_model_name"] == "judge-model"  # the server echoes the request's model
    assert meta["token_usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
        "cached_tokens": 0,
    }
    assert "passed" not in meta  # no pass_threshold configured


@pytest.mark.parametrize(("reply", "passed"), [("0.8", True), ("0.7", True), ("0.5", False)])
def test_pass_threshold_is_reported(server, settings, reply, passed):
    result = grade_with_reply(
        score_grader(settings, pass_threshold=0.7), server, ScriptedReply(reply)
    )
    assert result.metadata["pass_threshold"] == 0.7
    assert result.metadata["passed"] is passed


@pytest.mark.parametrize(
    "reply",
    [
        "The answer looks fine to me.",
        '{"result": "high"}',
        '{"result": true}',
        '{"verdict": 0.5}',
        "NaN",
        "1/0",
        "",
        "The score is between 0.2 and 0.4",
    ],
)
def test_unreadable_score_is_parse_error_scoring_zero(server, settings, reply):
    result = grade_with_reply(score_grader(settings), server, ScriptedReply(reply))
    assert result.score == 0.0
    assert error_codes(result) == ["model_grader_parse_error"]


def test_null_content_is_parse_error(server, settings):
    result = grade_with_reply(score_grader(settings), server, ScriptedReply(content=None))
    assert error_codes(result) == ["model_grader_parse_error"]


def test_truncated_reply_says_so(server, settings):
    reply = ScriptedReply('{"steps": [{"description": "long', finish_reason="length")
    result = grade_with_reply(score_grader(settings), server, reply)
    assert error_codes(result) == ["model_grader_parse_error"]
    assert "token limit" in result.errors[0].message


@pytest.mark.parametrize(
    "reply",
    [
        ScriptedReply(content=None, refusal="I can't grade this content."),
        ScriptedReply("I'm sorry, but I can't help with grading this."),
    ],
)
def test_refusals(server, settings, reply):
    result = grade_with_reply(score_grader(settings), server, reply)
    assert result.score == 0.0
    assert error_codes(result) == ["model_grader_refusal_error"]


# --- labels --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "label", "score"),
    [
        ('{"label": "correct"}', "correct", 1.0),
        ('{"label": "incorrect"}', "incorrect", 0.0),
        ('```json\n{"label": "Partially Correct"}\n```', "partially correct", 0.0),
        ("correct", "correct", 1.0),
        ('"INCORRECT".', "incorrect", 0.0),
        ("The answer is Correct: Paris is right.", "correct", 1.0),
        ("I would call it partially correct overall.", "partially correct", 0.0),
    ],
)
def test_label_reply_shapes(server, settings, reply, label, score):
    result = grade_with_reply(label_grader(settings), server, ScriptedReply(reply))
    assert result.ok, result.errors
    assert result.metadata["label"] == label
    assert result.score == score


@pytest.mark.parametrize(
    "reply",
    [
        '{"label": "maybe"}',
        "banana",
        "It is either correct or incorrect.",
        "",
    ],
)
def test_unreadable_label_is_parse_error(server, settings, reply):
    result = grade_with_reply(label_grader(settings), server, ScriptedReply(reply))
    assert result.score == 0.0
    assert error_codes(result) == ["model_grader_parse_error"]


def test_several_passing_labels(server, settings):
    grader = label_grader(settings, passing_labels=["correct", "partially correct"])
    result = grade_with_reply(grader, server, ScriptedReply('{"label": "partially correct"}'))
    assert result.score == 1.0 and result.metadata["passed"] is True


# --- server failures: retries, timeouts, garbage ------------------------------------------


def test_server_error_after_bounded_retries(server, settings):
    server.default = ScriptedReply(status=500)
    result = grade_with_reply(score_grader(settings), server, ScriptedReply(status=500))
    assert result.score == 0.0
    assert error_codes(result) == ["model_grader_server_error"]
    assert "HTTP 500" in result.errors[0].message
    assert len(server.requests) == settings.max_retries + 1 == 3


def test_retry_then_success(server, settings):
    server.enqueue(
        ScriptedReply(status=503), ScriptedReply(status=429, headers={"retry-after": "0"})
    )
    result = grade_with_reply(score_grader(settings), server, ScriptedReply("0.3"))
    assert result.ok and result.score == 0.3
    assert len(server.requests) == 3


def test_client_error_is_not_retried(server, settings):
    result = grade_with_reply(score_grader(settings), server, ScriptedReply(status=401))
    assert error_codes(result) == ["model_grader_server_error"]
    assert (
        "HTTP 401" in result.errors[0].message and "scripted error 401" in result.errors[0].message
    )
    assert len(server.requests) == 1


def test_timeout_is_server_error_quickly(server):
    settings = JudgeSettings(base_url=server.base_url, timeout_s=0.3, max_retries=1, backoff_s=0.01)
    server.default = ScriptedReply("1", delay_s=30)
    started = time.perf_counter()
    result = score_grader(settings).grade(SAMPLE, ITEM)
    elapsed = time.perf_counter() - started
    assert error_codes(result) == ["model_grader_server_error"]
    assert "within 0.3 s" in result.errors[0].message
    assert len(server.requests) == 2  # one retry
    assert elapsed < 3.0


def test_unreachable_endpoint_is_server_error():
    with ChatServer() as closed:
        base_url = closed.base_url  # the port is free again once the server stops
    settings = JudgeSettings(base_url=base_url, timeout_s=1.0, max_retries=1, backoff_s=0.01)
    result = score_grader(settings).grade(SAMPLE, ITEM)
    assert error_codes(result) == ["model_grader_server_error"]


@pytest.mark.parametrize("raw", ["<html>bad gateway</html>", '{"choices": []}', '{"id": 1}'])
def test_non_completion_body_is_server_error(server, settings, raw):
    result = grade_with_reply(score_grader(settings), server, ScriptedReply(raw_body=raw))
    assert error_codes(result) == ["model_grader_server_error"]


# --- grade_many ----------------------------------------------------------------------------


def test_grade_many_runs_concurrently_and_keeps_order(server, settings):
    def answer_with_the_sample_value(body: Any) -> ScriptedReply:
        user_text = body["messages"][-1]["content"]  # "Answer: 0.3"
        return ScriptedReply(f'{{"result": {user_text.split()[-1]}}}', delay_s=0.3)

    server.responder = answer_with_the_sample_value
    values = [round(0.1 * i, 1) for i in range(8)]
    samples = [{"output_text": str(v)} for v in values]
    items = [ITEM] * 8
    items[3] = {}  # no `reference`: fails before any request
    grader = score_grader(settings)
    started = time.perf_counter()
    results = grader.grade_many(samples, items, max_concurrency=8)
    elapsed = time.perf_counter() - started
    grader.close()

    assert [r.score for r in results] == [v if i != 3 else 0.0 for i, v in enumerate(values)]
    assert error_codes(results[3]) == ["invalid_variable_error"]
    assert all(r.ok for i, r in enumerate(results) if i != 3)
    assert len(server.requests) == 7
    assert server.peak_in_flight >= 2
    assert elapsed < 7 * 0.3  # sequential would take at least 2.1 s
    assert all(r.latency_s >= 0.3 for i, r in enumerate(results) if i != 3)


# --- configuration: environment, registry, backend resolution -----------------------------


def test_settings_from_env_prefers_openrft_variables():
    env = {
        "OPENRFT_JUDGE_BASE_URL": "http://judge:8000/v1",
        "OPENAI_BASE_URL": "http://other/v1",
        "OPENAI_API_KEY": "sk-openai",
        "OPENRFT_JUDGE_TIMEOUT_S": "5",
        "OPENRFT_JUDGE_MAX_RETRIES": "0",
        "OPENRFT_JUDGE_STRUCTURED_OUTPUT": "true",
    }
    settings = JudgeSettings.from_env(env)
    assert settings.base_url == "http://judge:8000/v1"
    assert settings.api_key == "sk-openai"  # falls back to OPENAI_API_KEY
    assert settings.timeout_s == 5.0 and settings.max_retries == 0
    assert settings.structured_output is True
    assert JudgeSettings.from_env({}) == JudgeSettings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPENRFT_JUDGE_TIMEOUT_S", "soon"),
        ("OPENRFT_JUDGE_TIMEOUT_S", "0"),
        ("OPENRFT_JUDGE_MAX_RETRIES", "-1"),
        ("OPENRFT_JUDGE_MAX_RETRIES", "1.5"),
        ("OPENRFT_JUDGE_STRUCTURED_OUTPUT", "perhaps"),
    ],
)
def test_bad_env_values_name_the_variable(name, value):
    with pytest.raises(InvalidInput) as caught:
        JudgeSettings.from_env({name: value})
    assert caught.value.location == f"environment {name}"


def test_registry_grader_reads_endpoint_from_environment(server, monkeypatch):
    monkeypatch.setenv("OPENRFT_JUDGE_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENRFT_JUDGE_API_KEY", "sk-from-env")
    server.enqueue(ScriptedReply("Score: 0.65"))
    result = run(score_spec(), SAMPLE, ITEM)
    assert result.score == 0.65 and result.name == "judge" and result.type == "score_model"
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"


def test_bad_template_is_rejected_at_build():
    spec = score_spec(input=[{"role": "user", "content": "{{ row.answer }}"}])
    with pytest.raises(InvalidInput) as caught:
        build_grader(spec)
    assert caught.value.location.startswith("grader.input[0].content")


def test_missing_local_directory_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput) as caught:
        build_grader(score_spec(model=f"local:{tmp_path / 'absent'}"))
    assert caught.value.location == "grader.model"


def test_model_resolution_rule(tmp_path, settings):
    assert score_grader(settings, model=f"local:{tmp_path}").backend.kind == "local"
    assert score_grader(settings, model=str(tmp_path)).backend.kind == "local"
    assert score_grader(settings, model="gpt-4o-2024-08-06").backend.kind == "http"


# --- local Hugging Face judge (tiny random model: checks plumbing, not judgement) ----------


def local_request(text: str, **sampling: Any) -> JudgeRequest:
    return JudgeRequest(messages=[{"role": "user", "content": text}], sampling=sampling)


def test_local_judge_usage_matches_the_chat_template(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["grade this answer", "is the patient answer correct or not"]
    judge = LocalJudge(tiny_model_dir, JudgeSettings())
    replies = judge.complete_many([local_request(t, max_tokens=6) for t in texts], 4)
    for text, reply in zip(texts, replies, strict=True):
        prompt_ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
        )
        if hasattr(prompt_ids, "keys"):  # transformers 5 returns a BatchEncoding
            prompt_ids = prompt_ids["input_ids"]
        assert reply.usage["prompt_tokens"] == len(prompt_ids)
        assert 1 <= reply.usage["completion_tokens"] <= 6
        assert reply.finish_reason in ("stop", "length")
        assert (reply.finish_reason == "length") == (reply.usage["completion_tokens"] == 6)


def test_local_judge_sampling_is_seeded_and_leaves_global_rng_alone(tiny_model_dir: Path):
    judge = LocalJudge(tiny_model_dir, JudgeSettings())
    requests = [local_request("rate it", temperature=1.0, seed=3, max_tokens=8)] * 2
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = [r.text for r in judge.complete_many(requests, 2)]
    assert torch.equal(torch.get_rng_state(), state)
    second = [r.text for r in judge.complete_many(requests, 2)]
    assert first == second


def test_local_score_and_label_graders_give_spec_conforming_results(tiny_model_dir: Path):
    sampling = {"seed": 0, "max_completions_tokens": 8}
    spec_range = [-1, 1]
    score = build_grader(
        score_spec(model=f"local:{tiny_model_dir}", range=spec_range, sampling_params=sampling)
    )
    label = build_grader(label_spec(model=f"local:{tiny_model_dir}", sampling_params=sampling))
    samples = [{"output_text": text} for text in ("Paris", "Lyon", "maybe Paris")]
    items = [ITEM] * 3
    for grader, allowed in ((score, None), (label, {0.0, 1.0})):
        first = grader.grade_many(samples, items)
        second = grader.grade_many(samples, items)
        assert [(r.score, error_codes(r)) for r in first] == [
            (r.score, error_codes(r)) for r in second
        ]
        for result in first:
            if result.errors:
                assert error_codes(result) in (
                    ["model_grader_parse_error"],
                    ["model_grader_refusal_error"],
                )
                assert result.score == 0.0
            elif allowed is None:
                assert spec_range[0] <= result.score <= spec_range[1]
                assert result.metadata["judge_backend"] == "local"
            else:
                assert result.score in allowed
                assert result.metadata["label"] in ("correct", "incorrect", "partially correct")
        grader.close()


def test_chat_server_speaks_the_openai_protocol(server):
    """The helper server itself, checked with the official SDK as the protocol's oracle."""
    from openai import OpenAI

    server.enqueue(
        ScriptedReply(
            "hello there", usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        )
    )
    client = OpenAI(base_url=server.base_url, api_key="sk-sdk", max_retries=0)
    completion = client.chat.completions.create(
        model="any-model", messages=[{"role": "user", "content": "hi"}], temperature=0
    )
    assert completion.choices[0].message.content == "hello there"
    assert completion.model == "any-model" and completion.usage.total_tokens == 5
    assert [m.id for m in client.models.list()] == ["judge"]
    assert server.requests[0].body["temperature"] == 0


def test_score_model_inside_multi(server, monkeypatch):
    monkeypatch.setenv("OPENRFT_JUDGE_BASE_URL", server.base_url)
    server.enqueue(ScriptedReply('{"result": 0.6}'))
    multi = {
        "type": "multi",
        "name": "combined",
        "graders": {
            "quality": score_spec(),
            "exact": {
                "type": "string_check",
                "name": "exact",
                "input": "{{ sample.output_text }}",
                "reference": "{{ item.reference }}",
                "operation": "eq",
            },
        },
        "calculate_output": "0.5 * quality + 0.5 * exact",
    }
    result = run(multi, {"output_text": "Paris"}, ITEM)
    assert result.ok and result.sub_scores == {"quality": 0.6, "exact": 1.0}
    assert result.score == pytest.approx(0.8)
    with pytest.raises(InvalidInput) as caught:
        build_grader(
            {
                **multi,
                "graders": {"quality": score_spec(model="local:/no/such/dir")},
                "calculate_output": "quality",
            }
        )
    assert caught.value.location == "grader.graders.quality.model"
