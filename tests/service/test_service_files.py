"""Files API through the official openai SDK: upload, list, content, delete, bad uploads."""

from __future__ import annotations

import hashlib
import io
import json

import httpx
import openai
import pytest

ROWS = [
    {"messages": [{"role": "user", "content": "2+2="}], "answer": "4"},
    {"messages": [{"role": "user", "content": "3+4="}], "answer": "7"},
]


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def upload(client: openai.OpenAI, content: bytes, name: str = "train.jsonl"):
    return client.files.create(file=(name, io.BytesIO(content)), purpose="fine-tune")


def test_upload_list_retrieve_content_delete(client: openai.OpenAI, live) -> None:
    content = jsonl(ROWS)
    created = upload(client, content)
    assert created.id.startswith("file-")
    assert created.object == "file" and created.purpose == "fine-tune"
    assert created.bytes == len(content) and created.filename == "train.jsonl"

    assert client.files.retrieve(created.id).id == created.id
    assert client.files.content(created.id).read() == content
    assert [f.id for f in client.files.list()] == [created.id]

    with live.db.session() as session:
        from openrft.service.store import queries

        stored = queries.get_file(session, queries.get_or_create_project(session, "alpha").id,
                                  created.id)
        assert stored.sha256 == hashlib.sha256(content).hexdigest()

    deleted = client.files.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    assert list(client.files.list()) == []


def test_cursor_pagination_walks_every_file(client: openai.OpenAI) -> None:
    ids = [upload(client, jsonl(ROWS), f"f{i}.jsonl").id for i in range(5)]
    first = client.files.list(limit=2)
    assert first.has_more is True and len(first.data) == 2
    # Newest first; the SDK follows `after` cursors through every page.
    assert [f.id for f in client.files.list(limit=2)] == list(reversed(ids))
    assert [f.id for f in client.files.list(limit=2, order="asc")] == ids


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (jsonl(ROWS) + b'{"messages": [oops\n', "train.jsonl:3"),
        (b'{"answer": "4"}\n', "train.jsonl:1: messages"),
        (b'{"messages": []}\n', "train.jsonl:1: messages"),
        (b'[1, 2]\n', "train.jsonl:1"),
        (b'{"messages": [{"role": "robot", "content": "x"}]}\n', "messages[0].role"),
    ],
)
def test_malformed_upload_is_a_400_naming_the_line(client, live, content, expected) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        upload(client, content)
    error = caught.value.body
    assert caught.value.status_code == 400
    assert expected in error["message"], error
    assert error["type"] == "invalid_request_error"
    assert list(client.files.list()) == []
    # No half-written or temp file is left behind.
    assert list(live.settings.files_dir.iterdir()) == []


def test_oversized_upload_is_refused_naming_the_limit(client, live) -> None:
    big = jsonl(ROWS * 2000)  # > 64 KiB limit of the `live` fixture
    assert len(big) > live.settings.max_upload_bytes
    with pytest.raises(openai.APIStatusError) as caught:
        upload(client, big)
    assert caught.value.status_code == 413
    assert str(live.settings.max_upload_bytes) in caught.value.body["message"]
    assert list(live.settings.files_dir.iterdir()) == []


def test_oversized_upload_without_content_length_is_refused_while_streaming(live) -> None:
    # A chunked body has no Content-Length: the limit is enforced while copying instead.
    key = live.key("alpha")
    big = jsonl(ROWS * 2000)
    boundary = "XBOUNDARY"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
            f'fine-tune\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n').encode()
    body += big + f"\r\n--{boundary}--\r\n".encode()

    def chunks():
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    response = httpx.post(live.base_url + "/v1/files", content=chunks(), headers={
        "Authorization": f"Bearer {key}",
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["param"] == "file"
    assert [p for p in live.settings.files_dir.iterdir()] == []


def test_unknown_purpose_is_rejected(client) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("x.jsonl", io.BytesIO(jsonl(ROWS))), purpose="batch")
    assert caught.value.body["param"] == "purpose"


def test_file_just_over_the_limit_is_refused_exactly(client, live) -> None:
    limit = live.settings.max_upload_bytes
    row = (json.dumps(ROWS[0]) + "\n").encode()
    content = row * (limit // len(row) + 1)  # a few bytes over: within multipart slack
    assert limit < len(content) < limit + len(row) + 1
    with pytest.raises(openai.APIStatusError) as caught:
        upload(client, content)
    assert caught.value.status_code == 413
    fits = row * (limit // len(row))
    assert upload(client, fits).bytes == len(fits) <= limit
