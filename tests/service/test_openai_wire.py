"""Wire compatibility as OpenAI's clients see it: request ids, error codes, the OpenAPI schema.

Expectations come from OpenAI's public API: every response carries a server-made
`x-request-id` (the SDK exposes it as `_request_id`) and `openai-processing-ms`; an
unknown job answers `fine_tune_not_found` / "Could not find fine tune: <id>" and an
unknown file "No such File object: <id>" with a null code (answers recorded from
api.openai.com by the ruby-openai and other clients' test cassettes).
"""

from __future__ import annotations

import logging
import re
import time

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from openrft.service.app import create_app
from openrft.service.settings import ServiceSettings

REQUEST_ID = re.compile(r"^req_[0-9a-f]{32}$")


def raw(live, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=live.base_url + "/v1", headers=headers, timeout=30)


def test_every_answer_has_a_request_id_and_processing_time(live) -> None:
    key = live.key("alpha")
    with raw(live, key) as http, raw(live) as anonymous:
        answers = [
            http.get("/models"),  # 200
            anonymous.get("/models"),  # 401
            http.get("/fine_tuning/jobs/ftjob-nope"),  # 404 from a route
            http.get("/no/such/route"),  # 404 from the router
            http.post("/fine_tuning/jobs", json={"model": "m"}),  # 400 validation
        ]
        sent_id = http.get("/models", headers={"x-request-id": "mine-123"})
    assert [a.status_code for a in answers] == [200, 401, 404, 404, 400]
    ids = [a.headers["x-request-id"] for a in [*answers, sent_id]]
    assert all(REQUEST_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)  # unique, and a client-sent id is not echoed
    assert all(int(a.headers["openai-processing-ms"]) >= 0 for a in answers)
    assert answers[1].json()["error"]["message"].startswith("You didn't provide an API key.")


def test_a_wrong_method_is_405_with_allow(live) -> None:
    with raw(live, live.key("alpha")) as http:
        answer = http.request("TRACE", "/models")
        files = http.request("PUT", "/files/file-x")  # two routes share the path
    assert answer.status_code == 405 and answer.headers["allow"] == "GET"
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert files.status_code == 405 and files.headers["allow"] == "DELETE, GET"


def test_the_sdk_exposes_the_request_id(client) -> None:
    page = client.models.list()
    assert REQUEST_ID.match(page._request_id or "")  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError) as caught:
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    assert REQUEST_ID.match(caught.value.request_id or "")


def test_request_ids_are_in_the_server_log(live, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="openrft.service.requests"), \
            raw(live, live.key("alpha")) as http:
        answer = http.get("/fine_tuning/jobs/ftjob-nope")
        request_id = answer.headers["x-request-id"]
        # the line is written once the response has gone out, in the server's thread
        deadline = time.monotonic() + 10
        while not (lines := [r.getMessage() for r in caplog.records
                             if request_id in r.getMessage()]):
            assert time.monotonic() < deadline, "no log line carries the request id"
            time.sleep(0.05)
    assert "GET /v1/fine_tuning/jobs/ftjob-nope 404" in lines[0]


def test_a_500_has_a_request_id_and_leaks_nothing(tmp_path) -> None:
    app = create_app(ServiceSettings(data_dir=tmp_path))

    @app.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError(f"secret path {tmp_path}")

    with TestClient(app, raise_server_exceptions=False) as http:
        answer = http.get("/v1/boom")
    assert answer.status_code == 500
    request_id = answer.headers["x-request-id"]
    assert REQUEST_ID.match(request_id)
    error = answer.json()["error"]
    assert error["type"] == "server_error" and request_id in error["message"]
    assert str(tmp_path) not in answer.text


def test_not_found_errors_as_openai_spells_them(client) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.fine_tuning.jobs.retrieve("ftjob-abc")
    assert caught.value.body == {"message": "Could not find fine tune: ftjob-abc",
                                 "type": "invalid_request_error", "param": "fine_tune_id",
                                 "code": "fine_tune_not_found"}
    for call in (client.fine_tuning.jobs.cancel, client.fine_tuning.jobs.list_events,
                 client.fine_tuning.jobs.checkpoints.list):
        with pytest.raises(openai.NotFoundError) as caught:
            call("ftjob-abc")
        assert caught.value.code == "fine_tune_not_found"
    with pytest.raises(openai.NotFoundError) as caught:
        client.files.retrieve("file-abc")
    assert caught.value.body == {"message": "No such File object: file-abc",
                                 "type": "invalid_request_error", "param": "id", "code": None}
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-nope")
    assert caught.value.code == "model_not_found" and caught.value.param == "model"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "m"}, "training_file", "missing_required_parameter"),
        ({"model": "m", "training_file": "f", "colour": 1}, "colour", "unknown_parameter"),
        ({"model": "m", "training_file": "f", "seed": "x"}, "seed", "invalid_type"),
        ({"model": "m", "training_file": "f", "suffix": "s" * 65}, "suffix", "invalid_value"),
    ],
)
def test_validation_errors_use_openai_codes(client, body, param, code) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/fine_tuning/jobs", body=body, cast_to=object)
    assert (caught.value.param, caught.value.code) == (param, code)
    assert caught.value.body["type"] == "invalid_request_error"


def test_openapi_documents_error_bodies_for_every_operation(live) -> None:
    schema = httpx.get(live.base_url + "/openapi.json").json()
    operations = [(path, method, op) for path, ops in schema["paths"].items()
                  for method, op in ops.items()]
    assert len(operations) >= 18
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, method, op in operations:
        for status in ("400", "401", "404", "500"):
            content = op["responses"][status]["content"]["application/json"]["schema"]
            assert content == error_ref, (method, path, status)
        assert "422" not in op["responses"], (method, path)  # validation errors are 400
    assert "413" in schema["paths"]["/v1/files"]["post"]["responses"]
    error = schema["components"]["schemas"]["ErrorObject"]
    assert set(error["required"]) == {"message", "type", "param", "code"}
