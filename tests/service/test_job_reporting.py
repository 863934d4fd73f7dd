"""What a running job reports back as OpenAI fills it in: resolved hyperparameters,
trained_tokens, estimated_finish; wandb integrations; stores from older versions."""

from __future__ import annotations

import io
import json
import sys
import types

from sqlalchemy import create_engine, text

from openrft.service.integrations import integration_reporters
from openrft.service.job_reporter import StoreReporter
from openrft.service.store.db import Database
from openrft.service.store.models import Job

ROWS = [{"messages": [{"role": "user", "content": f"{a}+{a}="}], "answer": str(2 * a)}
        for a in range(4)]
GRADER = {"type": "string_check", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "operation": "eq"}


def create_job(client, model_dir, **body):
    content = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    file_id = client.files.create(file=("d.jsonl", io.BytesIO(content)), purpose="fine-tune").id
    return client.fine_tuning.jobs.create(
        model=str(model_dir), training_file=file_id,
        method={"type": "reinforcement", "reinforcement": {
            "grader": GRADER, "hyperparameters": {"batch_size": 2}}}, **body)


def test_running_job_shows_resolved_values_tokens_and_finish_estimate(
        live, client, tiny_model_dir) -> None:
    job = create_job(client, tiny_model_dir)
    assert job.hyperparameters.n_epochs == "auto" and job.trained_tokens is None
    clock = iter([0.0, 1000.0, 1010.0, 1030.0])  # construction, start, step 1, step 2
    reporter = StoreReporter(live.db, job.id, "worker-x", "ft:model:alpha::1",
                             clock=lambda: next(clock))
    config = {"batch_size": 2, "learning_rate_multiplier": 1.0, "n_epochs": 3,
              "reasoning_effort": "default", "compute_multiplier": 1.0, "eval_interval": 1,
              "eval_samples": 0, "group_size": 8, "learning_rate": 2e-5}
    reporter.on_start(4, config)  # t = 1000
    reporter.on_step({"step": 1, "train_reward_mean": 0.5, "trained_tokens": 100})  # t = 1010
    seen = client.fine_tuning.jobs.retrieve(job.id)
    assert seen.trained_tokens == 100
    assert seen.estimated_finish == 1010 + 10 * 3  # 10 s per step, 3 steps left
    reporter.on_step({"step": 2, "train_reward_mean": 0.5, "trained_tokens": 50})  # t = 1030
    seen = client.fine_tuning.jobs.retrieve(job.id)
    assert seen.trained_tokens == 150
    assert seen.estimated_finish == 1030 + 15 * 2  # (1030 - 1000) / 2 steps, 2 left
    openai_keys = {k: config[k] for k in ("batch_size", "learning_rate_multiplier", "n_epochs",
                                          "reasoning_effort", "compute_multiplier",
                                          "eval_interval", "eval_samples")}
    assert seen.hyperparameters.model_dump(exclude_none=True) == openai_keys
    shown = seen.method.reinforcement.hyperparameters.model_dump(exclude_none=True)
    assert shown == openai_keys
    with live.db.session() as session:  # the stored request is unchanged (resume uses it)
        stored = session.get(Job, job.id).method["reinforcement"]["hyperparameters"]
    assert stored == {"batch_size": 2}


def test_supervised_job_shows_its_resolved_epochs_and_batch(live, client,
                                                           tiny_model_dir) -> None:
    rows = [{"messages": [{"role": "user", "content": "1+1="},
                          {"role": "assistant", "content": "2"}]}] * 3
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    file_id = client.files.create(file=("s.jsonl", io.BytesIO(content)), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=file_id)
    reporter = StoreReporter(live.db, job.id, "worker-x", "ft:model:alpha::2")
    reporter.on_start(3, {"epochs": 1, "batch_size": 8, "learning_rate": 2e-4, "seed": 0})
    shown = client.fine_tuning.jobs.retrieve(job.id).hyperparameters
    assert (shown.n_epochs, shown.batch_size, shown.learning_rate_multiplier) == (1, 8, "auto")


def test_wandb_integration_warns_when_it_cannot_run(live, client, tiny_model_dir,
                                                     monkeypatch) -> None:
    integrations = [{"type": "wandb", "wandb": {"project": "rft", "tags": ["x"]}}]
    created = create_job(client, tiny_model_dir, integrations=integrations)
    with live.db.session() as session:
        job = session.get(Job, created.id)
    warnings: list[str] = []

    class Events:
        def on_event(self, level, message, data=None) -> None:
            warnings.append(f"{level}: {message}")

    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    assert integration_reporters(job, Events()) == []
    assert "not installed" in warnings[-1] and warnings[-1].startswith("warn:")

    monkeypatch.setitem(sys.modules, "wandb", types.ModuleType("wandb"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert integration_reporters(job, Events()) == []
    assert "WANDB_API_KEY" in warnings[-1]


def test_wandb_integration_logs_each_step_when_configured(live, client, tiny_model_dir,
                                                          monkeypatch) -> None:
    calls: list[tuple] = []

    class Run:
        def log(self, data, step) -> None:
            calls.append(("log", data, step))

        def finish(self) -> None:
            calls.append(("finish",))

    fake = types.ModuleType("wandb")
    fake.init = lambda **kwargs: calls.append(("init", kwargs)) or Run()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_API_KEY", "k")
    integrations = [{"type": "wandb", "wandb": {"project": "rft", "name": "r1", "tags": ["x"]}}]
    created = create_job(client, tiny_model_dir, integrations=integrations)
    with live.db.session() as session:
        job = session.get(Job, created.id)
    (reporter,) = integration_reporters(job, None)  # type: ignore[arg-type]
    reporter.on_start(2, {"seed": 1})
    reporter.on_step({"step": 1, "train_reward_mean": 0.25, "forward_replayed": True,
                      "note": "text"})
    reporter.on_end({})
    init = calls[0][1]
    assert (init["project"], init["name"], init["id"], init["resume"]) == (
        "rft", "r1", job.id, "allow")
    assert init["tags"] == ["openrft/finetune", f"openrft/{tiny_model_dir.name}",
                            f"openrft/{job.id}", "x"]
    assert calls[1:] == [("log", {"step": 1, "train_reward_mean": 0.25}, 1), ("finish",)]


def test_a_store_from_before_new_columns_gains_them(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    Database(url).create_tables()
    engine = create_engine(url)
    with engine.begin() as connection:  # as an older OpenRFT left it
        for column in ("integrations", "resolved_hyperparameters", "estimated_finish"):
            connection.execute(text(f"ALTER TABLE jobs DROP COLUMN {column}"))
        connection.execute(text("ALTER TABLE files DROP COLUMN expires_at"))
    engine.dispose()
    db = Database(url)
    db.create_tables()
    with db.session() as session:
        assert session.query(Job).all() == []  # selects every column: fails if one is missing
        columns = {row[1] for row in session.execute(text("PRAGMA table_info(jobs)"))}
    assert {"integrations", "resolved_hyperparameters", "estimated_finish"} <= columns
