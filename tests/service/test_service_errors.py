"""Every failure answers OpenAI's error JSON, never FastAPI's `{"detail": ...}`."""

from __future__ import annotations

import httpx
import openai
import pytest


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_unknown_route_wrong_method_and_bad_query(live) -> None:
    headers = {"Authorization": f"Bearer {live.key('alpha')}"}
    missing = httpx.get(live.base_url + "/v1/nowhere", headers=headers)
    assert missing.status_code == 404 and error_of(missing)["type"] == "invalid_request_error"
    wrong = httpx.put(live.base_url + "/v1/files", headers=headers)
    assert wrong.status_code == 405 and error_of(wrong)
    bad = httpx.get(live.base_url + "/v1/fine_tuning/jobs?limit=0", headers=headers)
    assert bad.status_code == 400 and error_of(bad)["param"] == "limit"
    unparsable = httpx.post(live.base_url + "/v1/fine_tuning/jobs", headers=headers,
                            content=b"{not json", )
    assert unparsable.status_code == 400 and error_of(unparsable)


def test_sdk_surfaces_the_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.fine_tuning.jobs.retrieve("ftjob-missing")
    assert "ftjob-missing" in caught.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="ft:none:alpha::x", max_tokens=2,
                                       messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=[])
    assert caught.value.body["param"] == "messages"
