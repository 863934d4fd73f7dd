"""Which `model` a job or chat may name: catalog, the project's ft: models, admin roots,
aliases; everything else is a 400 `model_not_found` at once, with nothing queued and no
server path in the answer."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

import openai
import pytest
from service_flow import GRADER, TRAIN, create_job, wait_for

from fake_catalog import copying_pip, install_fake_entry
from openrft.models import catalog
from openrft.service.errors import APIError
from openrft.service.model_access import resolve_model, root_model_path
from openrft.service.settings import ServiceSettings
from openrft.service.store import queries
from openrft.service.store.ids import now
from openrft.service.store.models import FineTunedModel, Job
from openrft.service.worker import Worker


def _upload(client: openai.OpenAI) -> str:
    content = "".join(json.dumps(r) + "\n" for r in TRAIN).encode()
    return client.files.create(file=("t.jsonl", io.BytesIO(content)), purpose="fine-tune").id


def _rft() -> dict:
    return {"type": "reinforcement", "reinforcement": {"grader": GRADER}}


def _model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    """A root with `plain`, `org/nested`, a symlink out of it and a secret model beside it."""
    root = tmp_path / "root"
    _model_dir(root / "plain")
    _model_dir(root / "org" / "nested")
    outside = _model_dir(tmp_path / "outside" / "secret")
    os.symlink(outside, root / "escape")
    return {"root": root, "outside": outside}


def test_root_names_resolve_inside_and_nothing_escapes(roots) -> None:
    root = roots["root"]
    assert root_model_path((root,), "plain") == root / "plain"
    assert root_model_path((root,), "org/nested") == root / "org" / "nested"
    assert root_model_path((root,), str(root / "plain")) == root / "plain"  # absolute inside
    refused = ["", ".", "..", "../outside/secret", "plain/..", "org//nested", "./plain",
               "escape", str(roots["outside"]), "/etc", str(root / ".." / "outside" / "secret"),
               str(root), "org", "missing", "plain\\..\\x"]
    for name in refused:
        assert root_model_path((root,), name) is None, name


def test_settings_refuse_a_root_over_the_data_dir_and_unknown_alias_targets(tmp_path) -> None:
    with pytest.raises(ValueError, match="overlaps the data directory"):
        ServiceSettings(data_dir=tmp_path / "data", model_roots=(tmp_path,))
    with pytest.raises(ValueError, match="is not a directory"):
        ServiceSettings(data_dir=tmp_path / "data", model_roots=(tmp_path / "none",))
    with pytest.raises(ValueError, match="no such catalog"):
        ServiceSettings(data_dir=tmp_path / "data", model_aliases={"gpt-4o": "nope"})
    with pytest.raises(ValueError, match="not ft: models"):
        ServiceSettings(data_dir=tmp_path / "data", model_aliases={"a": "ft:x:y::z"})
    ok = ServiceSettings(data_dir=tmp_path / "data",
                         model_aliases={"o4-mini-2025-04-16": "smollm2-135m-instruct"})
    assert ok.model_aliases["o4-mini-2025-04-16"] == "smollm2-135m-instruct"


def test_bad_models_are_400_at_creation_and_nothing_is_queued(make_server, roots,
                                                              tmp_path) -> None:
    live = make_server(model_roots=(roots["root"],))
    client = live.client(live.key("alpha"))
    file_id = _upload(client)
    data_dir = str(live.settings.data_dir)
    other_run = _model_dir(live.settings.jobs_dir / "ftjob-beta" / "run" / "final")
    with pytest.raises(openai.BadRequestError) as caught:  # the request schema says min 1
        client.fine_tuning.jobs.create(model="", training_file=file_id, method=_rft())
    assert caught.value.body["param"] == "model"
    for name in ["/etc", "/root", "..", "../outside/secret", "escape",
                 str(roots["outside"]), "no-org/no-model", "o4-mini-2025-04-16",
                 "ft:model:beta::x", str(other_run), "plain/../../outside/secret"]:
        started = time.monotonic()
        with pytest.raises(openai.BadRequestError) as caught:
            client.fine_tuning.jobs.create(model=name, training_file=file_id, method=_rft())
        assert time.monotonic() - started < 5  # at once: no hub retries, no model loading
        error = caught.value.body
        assert error["code"] == "model_not_found" and error["param"] == "model"
        assert f"'{name}'" in error["message"]
        assert "smollm2-135m-instruct" in error["message"]  # the available models are listed
        assert "plain" in error["message"] and "org/nested" in error["message"]
        if data_dir not in name:
            assert data_dir not in error["message"]
        assert str(roots["root"]) not in error["message"]
    assert list(client.fine_tuning.jobs.list()) == []  # nothing stored, nothing queued


def test_chat_refuses_the_same_way_without_loading_anything(make_server, roots) -> None:
    live = make_server(model_roots=(roots["root"],))
    client = live.client(live.key("alpha"))
    for name in ["", "/etc", "../outside/secret", "no-org/no-model"]:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=name, max_tokens=2,
                                           messages=[{"role": "user", "content": "hi"}])
        assert caught.value.body["code"] == "model_not_found"
        assert str(live.settings.data_dir) not in caught.value.body["message"]
        assert os.getcwd() not in caught.value.body["message"]


def test_ft_models_resolve_only_in_their_own_project(make_server) -> None:
    live = make_server()
    live.key("alpha")
    live.key("beta")
    weights = _model_dir(live.settings.jobs_dir / "ftjob-b" / "run" / "final")
    with live.db.session() as session:
        alpha = queries.get_or_create_project(session, "alpha")
        beta = queries.get_or_create_project(session, "beta")
        session.add(Job(id="ftjob-b", project_id=beta.id, model="m", model_path="m",
                        training_file="file-x", method={"type": "reinforcement"}, seed=0,
                        status="succeeded", output_dir=str(weights.parent), created_at=now()))
        session.flush()
        session.add(FineTunedModel(id="ft:m:beta::b", project_id=beta.id, job_id="ftjob-b",
                                   path=str(weights), created_at=now()))
        session.commit()
        assert resolve_model(session, live.settings, beta.id, "ft:m:beta::b").load_as == str(
            weights)
        for name in ("ft:m:beta::b", str(weights)):
            with pytest.raises(APIError) as caught:
                resolve_model(session, live.settings, alpha.id, name)
            assert caught.value.status == 400 and caught.value.code == "model_not_found"


def test_models_list_offers_catalog_roots_and_aliases(make_server, roots) -> None:
    live = make_server(model_roots=(roots["root"],),
                       model_aliases={"o4-mini-2025-04-16": "plain"})
    client = live.client(live.key("alpha"))
    ids = [m.id for m in client.models.list()]
    for name in ("o4-mini-2025-04-16", "smollm2-135m-instruct", "plain", "org/nested"):
        assert name in ids
    assert "escape" not in ids  # a symlink out of the root is not a model of the root
    assert client.models.retrieve("o4-mini-2025-04-16").owned_by == "openrft"


@pytest.mark.slow
def test_an_aliased_openai_name_trains_the_aliased_model(make_server, tiny_model_dir,
                                                         tmp_path) -> None:
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "tiny-chat")
    live = make_server(model_roots=(root,),
                       model_aliases={"o4-mini-2025-04-16": "tiny-chat"})
    client = live.client(live.key("alpha"))
    job = create_job(client, "o4-mini-2025-04-16", _upload(client), None)
    assert job.model == "o4-mini-2025-04-16"  # the job reports the client's name
    assert Worker(live.settings).run_once() is True
    done = wait_for(client, job.id)
    assert done.status == "succeeded" and done.model == "o4-mini-2025-04-16"
    assert done.fine_tuned_model.startswith("ft:tiny-chat:alpha:adder:")  # what trained
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert "Base model: tiny-chat (requested as o4-mini-2025-04-16)" in messages
    reply = client.chat.completions.create(model=done.fine_tuned_model, max_tokens=3,
                                           messages=[{"role": "user", "content": "1+1="}])
    assert reply.model == done.fine_tuned_model


@pytest.mark.slow
def test_a_catalog_model_not_pulled_yet_is_pulled_by_the_worker(make_server, tmp_path,
                                                                monkeypatch,
                                                                tiny_model_dir) -> None:
    fake = install_fake_entry(tmp_path, monkeypatch, tiny_model_dir)
    copying_pip(fake, monkeypatch)
    live = make_server()
    client = live.client(live.key("alpha"))
    job = create_job(client, "fake-model", _upload(client), None)  # accepted before a pull
    assert catalog.pulled_path("fake-model") is None and fake["downloads"] == 0
    assert Worker(live.settings).run_once() is True
    done = wait_for(client, job.id)
    assert done.status == "succeeded" and done.fine_tuned_model.startswith("ft:fake-model:")
    assert fake["downloads"] == 1 and catalog.pulled_path("fake-model") is not None
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    messages = [e.message for e in reversed(events)]  # the API lists newest first
    pulling = "Pulling base model fake-model from the model catalog (first use; later jobs " \
              "reuse it)"
    assert pulling in messages and "Pulled base model fake-model" in messages
    assert messages.index(pulling) < messages.index("Pulled base model fake-model")


def test_a_failed_pull_at_chat_is_a_503_without_paths(make_server, tmp_path, monkeypatch,
                                                      tiny_model_dir) -> None:
    fake = install_fake_entry(tmp_path, monkeypatch, tiny_model_dir)
    shutil.rmtree(fake["links"])  # pip finds nothing: as offline
    fake["links"].mkdir()
    live = make_server()
    client = live.client(live.key("alpha"))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="fake-model", max_tokens=2,
                                       messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 503
    assert caught.value.body["code"] == "model_unavailable"
    assert caught.value.body["type"] == "server_error"
    assert "fake-model" in caught.value.body["message"]
    assert str(tmp_path) not in caught.value.body["message"]


def test_serve_options_build_roots_and_aliases(tmp_path) -> None:
    from openrft.cli.serve import _model_access
    from openrft.errors import InvalidInput

    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("o4-mini-2025-04-16: smollm2-135m-instruct\ngpt-4o: plain\n")
    fields = _model_access([tmp_path], ["gpt-4o=smollm2-135m-instruct"], aliases)
    assert fields == {"model_roots": (tmp_path,), "model_aliases": {
        "o4-mini-2025-04-16": "smollm2-135m-instruct", "gpt-4o": "smollm2-135m-instruct"}}
    (tmp_path / "aliases.json").write_text('{"a": "smollm2-135m-instruct"}')
    assert _model_access(None, None, tmp_path / "aliases.json")["model_aliases"] == {
        "a": "smollm2-135m-instruct"}
    for bad in ("no-equals", "=x", "x="):
        with pytest.raises(InvalidInput, match="--model-alias"):
            _model_access(None, [bad], None)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(InvalidInput, match="expected a mapping"):
        _model_access(None, None, tmp_path / "list.yaml")


def test_serve_refuses_an_unknown_alias_target_in_one_line(monkeypatch, capsys,
                                                           tmp_path) -> None:
    import sys

    from openrft.cli import main

    monkeypatch.setattr(sys, "argv", ["openrft", "serve", "--data-dir", str(tmp_path / "d"),
                                      "--model-alias", "gpt-4o=nope", "--workers", "0"])
    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "gpt-4o" in err and "no such catalog" in err
