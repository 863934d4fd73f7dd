"""Worker scheduling: atomic claims under contention, heartbeats, stale-job takeover.

`count_runs` below is a test double of the training call, used ONLY to check claiming
(who runs which job); the real engine runs in test_service_e2e / test_service_recovery.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from sqlalchemy import select

from openrft.service.settings import ServiceSettings
from openrft.service.store import jobs as job_queries
from openrft.service.store import queries
from openrft.service.store.db import Database
from openrft.service.store.ids import now
from openrft.service.store.models import Job
from openrft.service.training import TrainingOutcome
from openrft.service.worker import Worker


def queue_jobs(db: Database, count: int) -> list[str]:
    db.create_tables()
    ids = []
    with db.session() as session:
        project = queries.get_or_create_project(session, "alpha")
        for i in range(count):
            job = Job(id=f"ftjob-{i:04d}", project_id=project.id, model="m", model_path="m",
                      training_file="file-x", method={"type": "reinforcement"}, seed=0,
                      status="queued", output_dir=f"/nonexistent/{i}", created_at=now())
            job_queries.add_job(session, job)
            ids.append(job.id)
    return ids


def test_concurrent_workers_never_run_a_job_twice(tmp_path) -> None:
    settings = ServiceSettings(data_dir=tmp_path, poll_interval_s=0.01)
    settings.prepare()
    job_ids = queue_jobs(Database(settings.db_url), 40)
    runs: list[tuple[str, str]] = []
    lock = threading.Lock()

    def count_runs(job, _settings, reporter) -> TrainingOutcome:
        with lock:
            runs.append((job.id, reporter.worker_id))
        time.sleep(0.005)
        final = tmp_path / "final" / job.id
        final.mkdir(parents=True)
        return TrainingOutcome(final_model_dir=str(final), stopped=False)

    # Each worker has its own database engine, as separate processes would.
    workers = [Worker(settings, Database(settings.db_url), train_fn=count_runs)
               for _ in range(4)]

    def drain(worker: Worker) -> None:
        while worker.run_once():
            pass

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert Counter(job_id for job_id, _ in runs) == Counter(job_ids)  # each exactly once
    assert len({worker for _, worker in runs}) > 1  # the work really was shared
    db = Database(settings.db_url)
    with db.session() as session:
        jobs = session.scalars(select(Job)).all()
    assert {j.status for j in jobs} == {"succeeded"}
    assert all(j.attempts == 1 for j in jobs)
    assert all(j.fine_tuned_model.startswith("ft:m:alpha::") for j in jobs)


def test_stale_running_job_is_taken_over_and_live_one_is_not(tmp_path) -> None:
    settings = ServiceSettings(data_dir=tmp_path, stale_after_s=5)
    settings.prepare()
    db = Database(settings.db_url)
    db.create_tables()
    stale_id, live_id = queue_jobs(db, 2)
    with db.session() as session:
        assert job_queries.claim_next_job(session, "dead-worker", 5).id == stale_id
        assert job_queries.claim_next_job(session, "busy-worker", 5).id == live_id
        session.get(Job, stale_id).heartbeat_at = time.time() - 60  # silent for a minute
    with db.session() as session:
        taken = job_queries.claim_next_job(session, "rescuer", 5)
        assert taken is not None and taken.id == stale_id and taken.attempts == 2
        assert job_queries.claim_next_job(session, "rescuer-2", 5) is None
        # the dead worker's heartbeat and result no longer count
        assert job_queries.heartbeat(session, stale_id, "dead-worker") is False
        assert job_queries.finish_job(session, stale_id, "dead-worker", "failed") is False
        assert job_queries.heartbeat(session, stale_id, "rescuer") is True


def test_failed_training_fails_the_job_with_its_error(tmp_path) -> None:
    from openrft.errors import InvalidInput

    settings = ServiceSettings(data_dir=tmp_path)
    settings.prepare()
    db = Database(settings.db_url)
    db.create_tables()
    (job_id,) = queue_jobs(db, 1)

    def broken(job, _settings, _reporter) -> TrainingOutcome:
        raise InvalidInput("train.jsonl:3", "bad row")

    assert Worker(settings, db, train_fn=broken).run_once() is True
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "failed" and job.finished_at is not None
        assert job.error == {"code": "invalid_input", "message": "train.jsonl:3: bad row",
                             "param": "train.jsonl:3"}
        events = job_queries.list_events(session, job_id, None, 10).items
        assert events[0].level == "error" and "bad row" in events[0].message


def test_a_model_gone_before_training_fails_the_job_not_the_worker(make_server,
                                                                    tmp_path) -> None:
    import io
    import json
    import shutil

    root = tmp_path / "models"
    (root / "gone").mkdir(parents=True)
    (root / "gone" / "config.json").write_text("{}")  # a model dir when the job is created
    live = make_server(model_roots=(root,))
    client = live.client(live.key("alpha"))
    row = {"messages": [{"role": "user", "content": "1+1="}], "answer": "2"}
    file_id = client.files.create(file=("t.jsonl", io.BytesIO(json.dumps(row).encode())),
                                  purpose="fine-tune").id
    grader = {"type": "string_check", "name": "g", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "operation": "eq"}
    job = client.fine_tuning.jobs.create(
        model="gone", training_file=file_id,
        method={"type": "reinforcement", "reinforcement": {"grader": grader}})
    shutil.rmtree(root / "gone")  # the admin removed it while the job waited
    worker = Worker(live.settings)  # the real training call
    assert worker.run_once() is True
    failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.status == "failed"
    assert failed.error.code == "model_not_found"
    assert "'gone'" in failed.error.message and str(root) not in failed.error.message
    assert worker.run_once() is False  # the worker carries on, the queue is empty
