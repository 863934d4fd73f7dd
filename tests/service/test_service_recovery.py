"""Nothing is lost: a server restart keeps everything, a killed worker's job is resumed."""

from __future__ import annotations

import io
import os
import signal
import time

import pytest
from service_flow import TRAIN, VALID, create_job, spawn_worker, upload, wait_for

from openrft.service.store.models import Job


def test_server_restart_keeps_files_jobs_events_and_keys(make_server, tiny_model_dir) -> None:
    first = make_server()
    key = first.key("alpha")
    client = first.client(key)
    train_id = upload(client, TRAIN, "train.jsonl")
    job = create_job(client, str(tiny_model_dir), train_id, None)
    client.fine_tuning.jobs.pause(job.id)
    before = {
        "files": [f.model_dump() for f in client.files.list()],
        "jobs": [j.model_dump() for j in client.fine_tuning.jobs.list()],
        "events": [e.model_dump() for e in client.fine_tuning.jobs.list_events(job.id)],
        "content": client.files.content(train_id).read(),
    }
    first.stop()

    second = make_server()
    assert second.base_url != "" and second.settings.data_dir == first.settings.data_dir
    client = second.client(key)  # the key made before the restart still works
    after = {
        "files": [f.model_dump() for f in client.files.list()],
        "jobs": [j.model_dump() for j in client.fine_tuning.jobs.list()],
        "events": [e.model_dump() for e in client.fine_tuning.jobs.list_events(job.id)],
        "content": client.files.content(train_id).read(),
    }
    assert after == before
    assert after["jobs"][0]["status"] == "paused"
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"


@pytest.mark.slow
def test_killed_worker_job_resumes_from_last_checkpoint(make_server, tiny_model_dir,
                                                        tmp_path, spawn) -> None:
    live = make_server()
    key = live.key("alpha")
    client = live.client(key)
    train_id = upload(client, TRAIN, "train.jsonl")
    valid_id = upload(client, VALID, "valid.jsonl")
    # 4 rows / batch 2 * 3 epochs = 6 steps, a checkpoint after every step
    job = create_job(client, str(tiny_model_dir), train_id, valid_id, n_epochs=3, save_every=1)
    first = spawn_worker(spawn, live.settings.data_dir, tmp_path / "first.log", stale_after_s=3,
                         database_url=live.settings.database_url)
    deadline = time.monotonic() + 180
    while not list(client.fine_tuning.jobs.checkpoints.list(job.id)):
        assert time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-2000:]
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)
    killed_at = time.time()
    first.wait()
    saved_steps = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    assert client.fine_tuning.jobs.retrieve(job.id).status == "running"  # orphaned, not lost
    assert max(saved_steps) < 6, "the job finished before the kill; the test proves nothing"

    # The server restarts too while the job is orphaned: nothing is lost.
    live.stop()
    live = make_server()
    client = live.client(key)
    spawn_worker(spawn, live.settings.data_dir, tmp_path / "second.log", stale_after_s=3,
                 database_url=live.settings.database_url)
    done = wait_for(client, job.id)
    assert done.status == "succeeded", (tmp_path / "second.log").read_text()[-3000:]

    with live.db.session() as session:
        assert session.get(Job, job.id).attempts == 2
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=500))
    messages = [e.message for e in events]
    assert sum(m.startswith("Started by worker") for m in messages) == 1
    assert sum(m.startswith("Resumed by worker") for m in messages) == 1
    resumed = [m for m in messages if m.startswith("Resumed from ")]
    assert len(resumed) == 1
    resumed_step = int(resumed[0].rsplit(" ", 1)[-1])
    assert resumed_step >= max(saved_steps) >= 1  # continued from the last checkpoint
    metrics = [e for e in events if e.type == "metrics"]
    assert sorted(e.data["step"] for e in metrics) == [1, 2, 3, 4, 5, 6]  # each step once
    early = [e for e in metrics if e.data["step"] <= resumed_step]
    assert all(e.created_at <= killed_at + 1 for e in early)  # not re-run by the second worker
    assert done.fine_tuned_model in [m.id for m in client.models.list()]


def test_upload_failure_leaves_store_untouched(live) -> None:
    client = live.client(live.key("alpha"))
    good = upload(client, TRAIN, "good.jsonl")
    with pytest.raises(Exception):  # noqa: B017 - any 400; the store is what matters
        client.files.create(file=("bad.jsonl", io.BytesIO(b'{"messages": 1}\n')),
                            purpose="fine-tune")
    assert [f.id for f in client.files.list()] == [good]
    assert sorted(p.name for p in live.settings.files_dir.iterdir()) == [good]


def test_resume_step_follows_the_checkpoint_on_disk_not_the_store_row(tmp_path) -> None:
    """A worker killed between writing checkpoint step-2 and recording it in the store
    leaves the store one checkpoint behind; the trainer (RFT or supervised: the same
    checkpoints) resumes from step 2 on disk, so only metrics events after step 2 may be
    forgotten (step 2's event was lost before)."""
    from types import SimpleNamespace

    from openrft.service.worker import _resume_step

    run = tmp_path / "run"
    (run / "checkpoints" / "step-1").mkdir(parents=True)
    (run / "checkpoints" / "step-2").mkdir()
    (run / "checkpoints" / ".tmp-step-3").mkdir()  # incomplete: never resumed from
    for kind in ("reinforcement", "supervised"):
        job = SimpleNamespace(method={"type": kind}, output_dir=str(run), id="ftjob-x")
        assert _resume_step(job) == 2
    fresh = SimpleNamespace(method={"type": "supervised"}, output_dir=str(tmp_path / "none"),
                            id="ftjob-y")
    assert _resume_step(fresh) == 0
