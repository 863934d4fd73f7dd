"""API keys: hashed at rest, 401 without a valid key, 404 across projects."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import httpx
import openai
import pytest
from sqlalchemy import select

from openrft.service.store.models import ApiKey

ROW = {"messages": [{"role": "user", "content": "2+2="}], "answer": "4"}


def test_missing_or_wrong_key_is_401_with_openai_error(live) -> None:
    response = httpx.get(live.base_url + "/v1/files")
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    good = live.key("alpha")
    for bad in ("nope", good[:-1] + ("A" if good[-1] != "A" else "B"), "sk-orft-unknown-x"):
        with pytest.raises(openai.AuthenticationError):
            live.client(bad).files.list()


def test_keys_are_stored_hashed(live) -> None:
    key = live.key("alpha")
    with live.db.session() as session:
        stored = session.scalars(select(ApiKey)).all()
    assert len(stored) == 1
    assert key not in stored[0].secret_sha256 and key.split("-")[-1] not in stored[0].secret_sha256
    assert len(stored[0].secret_sha256) == 64


def test_projects_cannot_see_each_other(live) -> None:
    alpha = live.client(live.key("alpha"))
    beta = live.client(live.key("beta"))
    content = (json.dumps(ROW) + "\n").encode()
    file = alpha.files.create(file=("t.jsonl", io.BytesIO(content)), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        beta.files.retrieve(file.id)
    with pytest.raises(openai.NotFoundError):
        beta.files.content(file.id)
    with pytest.raises(openai.NotFoundError):
        beta.files.delete(file.id)
    assert list(beta.files.list()) == []
    # beta cannot train on alpha's file either
    with pytest.raises(openai.BadRequestError) as caught:
        beta.fine_tuning.jobs.create(model="m", training_file=file.id, method={
            "type": "reinforcement", "reinforcement": {"grader": {
                "type": "string_check", "name": "g", "input": "{{sample.output_text}}",
                "reference": "{{item.answer}}", "operation": "eq"}}})
    assert caught.value.body["param"] == "training_file"
    # a second key of the same project sees the file
    assert live.client(live.key("alpha")).files.retrieve(file.id).id == file.id


def test_keys_create_cli_prints_key_on_last_line(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from openrft.cli import main; main()", "keys", "create",
         "--project", "gamma", "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=120, check=True,
    )
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("sk-orft-") and " " not in key
    from openrft.service.auth import authenticate
    from openrft.service.settings import ServiceSettings
    from openrft.service.store.db import Database

    db = Database(ServiceSettings(data_dir=tmp_path / "d").db_url)
    with db.session() as session:
        assert authenticate(session, f"Bearer {key}").project_name == "gamma"


def test_jobs_are_invisible_to_other_projects(live, tiny_model_dir) -> None:
    alpha = live.client(live.key("alpha"))
    beta = live.client(live.key("beta"))
    content = (json.dumps(ROW) + "\n").encode()
    file = alpha.files.create(file=("t.jsonl", io.BytesIO(content)), purpose="fine-tune")
    offered = [m.id for m in beta.models.list()]  # catalog and root models: every project's
    job = alpha.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=file.id,
                                        method={"type": "reinforcement", "reinforcement": {
                                            "grader": {"type": "string_check", "name": "g",
                                                       "input": "{{sample.output_text}}",
                                                       "reference": "{{item.answer}}",
                                                       "operation": "eq"}}})
    for call in (beta.fine_tuning.jobs.retrieve, beta.fine_tuning.jobs.cancel,
                 beta.fine_tuning.jobs.pause, beta.fine_tuning.jobs.resume,
                 beta.fine_tuning.jobs.list_events, beta.fine_tuning.jobs.checkpoints.list):
        with pytest.raises(openai.NotFoundError):
            call(job.id)
    assert list(beta.fine_tuning.jobs.list()) == []
    assert [m.id for m in beta.models.list()] == offered
    assert [m.id for m in alpha.models.list()] == [str(tiny_model_dir), *offered]
    assert alpha.fine_tuning.jobs.retrieve(job.id).status == "queued"  # untouched by beta
