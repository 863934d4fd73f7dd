"""`openrft serve --ray-address`: a job runs as a Ray job on a real local cluster, with
its state in the service's store, and trains what a local worker trains; an unreachable
cluster pauses the job with a clear error, and resuming it queues it again."""

from __future__ import annotations

import pytest
from service_flow import TRAIN, create_job, upload

from openrft.service.ray_jobs import RayJobRunner, submission_id
from openrft.service.worker import Worker


def metric_rows(client, job_id: str) -> list[dict]:
    events = client.fine_tuning.jobs.list_events(job_id, limit=500)
    return sorted((e.data for e in events if e.type == "metrics"), key=lambda d: d["step"])


@pytest.mark.slow
def test_job_submitted_to_ray_trains_what_a_local_worker_trains(make_server, ray_cluster,
                                                                 tiny_model_dir):
    from ray.job_submission import JobSubmissionClient
    from safetensors.torch import load_file

    live = make_server()
    client = live.client(live.key("alpha"))
    train_id = upload(client, TRAIN, "train.jsonl")
    expert = {"reuse_rollout_forward": False, "base_learning_rate": 1e-2}

    on_ray = create_job(client, str(tiny_model_dir), train_id, None, backend="ray", **expert)
    runner = RayJobRunner(ray_cluster.dashboard_url)
    assert Worker(live.settings, train_fn=runner).run_once() is True
    done = client.fine_tuning.jobs.retrieve(on_ray.id)
    messages = [e.message for e in client.fine_tuning.jobs.list_events(on_ray.id, limit=500)]
    assert done.status == "succeeded", messages
    sid = submission_id(on_ray.id, 1)
    assert any(sid in m for m in messages)
    ray_job = JobSubmissionClient(ray_cluster.dashboard_url).get_job_info(sid)
    assert str(ray_job.status).endswith("SUCCEEDED")  # Ray really ran it

    here = create_job(client, str(tiny_model_dir), train_id, None, **expert)
    assert Worker(live.settings).run_once() is True
    local = client.fine_tuning.jobs.retrieve(here.id)
    assert local.status == "succeeded"

    ray_steps, local_steps = metric_rows(client, on_ray.id), metric_rows(client, here.id)
    assert [r["step"] for r in ray_steps] == [1, 2]
    for ray_row, local_row in zip(ray_steps, local_steps, strict=True):
        assert ray_row["train_reward_mean"] == local_row["train_reward_mean"]
        assert ray_row["completion_tokens_mean"] == local_row["completion_tokens_mean"]
    ray_model = {m.id: m for m in client.models.list()}[done.fine_tuned_model]
    assert ray_model.id.startswith("ft:")
    with live.db.session() as session:
        from openrft.service.store.models import Job

        ray_dir = session.get(Job, on_ray.id).output_dir
        local_dir = session.get(Job, here.id).output_dir
    ray_weights = load_file(f"{ray_dir}/final/adapter_model.safetensors")
    local_weights = load_file(f"{local_dir}/final/adapter_model.safetensors")
    for name, tensor in ray_weights.items():  # the update ran in another process
        assert (tensor - local_weights[name]).abs().max() < 1e-4, name


@pytest.mark.usefixtures("ray_installed")
def test_unreachable_cluster_pauses_the_job_with_an_error_and_resume_requeues_it(
        live, tiny_model_dir):
    from service_flow import free_port

    client = live.client(live.key("alpha"))
    train_id = upload(client, TRAIN, "train.jsonl")
    job = create_job(client, str(tiny_model_dir), train_id, None)
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert Worker(live.settings, train_fn=RayJobRunner(address)).run_once() is True
    paused = client.fine_tuning.jobs.retrieve(job.id)
    assert paused.status == "paused" and paused.error is None
    errors = [e.message for e in client.fine_tuning.jobs.list_events(job.id)
              if e.level == "error"]
    assert len(errors) == 1 and errors[0].startswith(f"Lost the Ray cluster at {address}")
    assert "resume it once the cluster is back" in errors[0]
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"


@pytest.mark.slow
def test_pausing_a_ray_job_checkpoints_it_and_resume_continues_it(make_server, ray_cluster,
                                                                   tiny_model_dir, tmp_path,
                                                                   spawn):
    import threading
    import time

    from service_flow import spawn_worker, wait_for

    live = make_server()
    client = live.client(live.key("alpha"))
    train_id = upload(client, TRAIN, "train.jsonl")
    job = create_job(client, str(tiny_model_dir), train_id, None, n_epochs=3, save_every=1,
                     max_tokens=16)  # 6 steps
    runner = RayJobRunner(ray_cluster.dashboard_url)
    first = threading.Thread(target=Worker(live.settings, train_fn=runner).run_once)
    first.start()
    deadline = time.monotonic() + 180
    while not metric_rows(client, job.id):
        assert time.monotonic() < deadline and first.is_alive(), "no step reported"
        time.sleep(0.1)
    client.fine_tuning.jobs.pause(job.id)
    first.join(timeout=180)
    paused = client.fine_tuning.jobs.retrieve(job.id)
    assert paused.status == "paused"
    saved = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    assert saved and max(saved) < 6, "the job finished before the pause"

    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    # the resume goes through the CLI: `openrft worker --ray-address URL`
    log = tmp_path / "worker.log"
    spawn_worker(spawn, live.settings.data_dir, log, 15.0, live.settings.database_url,
                 "--ray-address", ray_cluster.dashboard_url)  # stopped by `spawn`
    done = wait_for(client, job.id)
    assert done.status == "succeeded", log.read_text()[-3000:]
    assert [r["step"] for r in metric_rows(client, job.id)] == [1, 2, 3, 4, 5, 6]
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=500)]
    assert any(m.startswith("Resumed from ") and m.endswith(f" {max(saved)}")
               for m in messages)
    assert any(submission_id(job.id, 2) in m for m in messages)  # a second Ray job
