"""Training on a real local Ray cluster: the same results as the local backend, and
faults (a killed rollout actor, a killed trainer, a killed head) that lose nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from ray_task import ray_task_config

from openrft.distributed.settings import RaySettings
from openrft.rl.config import config_from_dict
from openrft.rl.reporter import NullReporter
from openrft.rl.trainer import train
from openrft.rollout.engine import GenerationParams

pytestmark = pytest.mark.slow

TIMING = {"step_seconds", "tokens_per_second", "sampling_seconds", "grading_seconds",
          "training_seconds", "grader_latency_s"}


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def samples(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]


def adapter(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "final" / "adapter_model.safetensors")


def optimizer_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from openrft.checkpoint import STATE_TENSORS

    tensors = load_file(checkpoint / STATE_TENSORS)
    return {k: v for k, v in tensors.items() if k.startswith("optimizer.")}


@pytest.fixture(scope="module")
def ray_run(ray_cluster, tiny_model_dir, toy_train_file, tmp_path_factory) -> Path:
    """An uninterrupted 3-step run on the cluster: the reference of the tests below."""
    out = tmp_path_factory.mktemp("ray_run") / "run"
    config = ray_task_config(tiny_model_dir, toy_train_file, out, "ray", ray_cluster.address)
    result = train(config_from_dict(config))
    assert result.steps == 3
    return out


@pytest.mark.parametrize("replay", [False, True])
def test_ray_backend_matches_the_local_backend(ray_run, tiny_model_dir, toy_train_file,
                                               tmp_path, replay):
    """Rollouts and rewards are identical. The update runs in this process either way:
    bit-identical to a local run that recomputes the forward pass as the Ray backend
    does; within float summation order of one that replays the rollout's forward."""
    local = tmp_path / "local"
    train(config_from_dict(ray_task_config(tiny_model_dir, toy_train_file, local, "local",
                                           reuse_rollout_forward=replay)))
    on_ray, here = metrics(ray_run), metrics(local)
    assert [r["step"] for r in on_ray] == [1, 2, 3]
    assert len({r["train_reward_mean"] for r in here}) > 1  # groups differ: weights move
    for ray_row, local_row in zip(on_ray, here, strict=True):
        for key in ("train_reward_mean", "completion_tokens_mean", "zero_variance_groups"):
            assert ray_row[key] == local_row[key], key
        assert ray_row["loss"] == pytest.approx(local_row["loss"], abs=1e-6)
        assert ray_row["grad_norm"] == pytest.approx(local_row["grad_norm"], rel=1e-5)
    assert [(s["output_text"], s["score"]) for s in samples(ray_run)] == \
           [(s["output_text"], s["score"]) for s in samples(local)]
    ray_weights, local_weights = adapter(ray_run), adapter(local)
    assert ray_weights.keys() == local_weights.keys()
    for name, tensor in ray_weights.items():
        if replay:  # AdamW's first steps move each weight by ~lr = 1e-2: 1e-4 is 1% of one
            torch.testing.assert_close(tensor, local_weights[name], rtol=0, atol=1e-4)
        else:
            assert torch.equal(tensor, local_weights[name]), name


class KillAfterStep(NullReporter):
    """SIGKILLs the first process whose title holds `title` once step `step` is reported."""

    def __init__(self, title: str, step: int = 1) -> None:
        self.title, self.step = title, step
        self.killed: list[int] = []

    def on_step(self, metrics: dict) -> None:
        import psutil

        if metrics["step"] != self.step:
            return
        for process in psutil.process_iter(["cmdline"]):
            if self.title in " ".join(process.info["cmdline"] or []):
                process.kill()
                self.killed.append(process.pid)
                return


def test_two_data_parallel_trainers_match_the_local_backend(ray_cluster, tiny_model_dir,
                                                           toy_train_file, tmp_path):
    """`ray.trainers: 2`: two trainer actors each update on half of every batch and sum
    their gradients over gloo. The run equals the local one-process run on the plain path
    (which the trainers run) up to float summation order: the same samples and rewards,
    losses within 1e-6, and weights within 1e-4, 1% of one AdamW step (~lr = 1e-2).
    A trainer actor killed after step 1 fails step 2's update: both trainers restart from
    the driver's copy (rank 0's weights, AdamW moments and schedule) and run it again, so
    the run still matches, with a warn event."""
    two, local = tmp_path / "two", tmp_path / "local"
    settings = {"address": ray_cluster.address, "trainers": 2, "cpus_per_trainer": 0.5,
                "cpus_per_rollout_worker": 0.5, "grading_tasks": 1}
    killer = KillAfterStep("ray::TrainerRank")
    train(config_from_dict(ray_task_config(tiny_model_dir, toy_train_file, two, "ray",
                                           ray=settings)), killer)
    assert len(killer.killed) == 1
    events = [json.loads(line) for line in (two / "events.jsonl").read_text().splitlines()]
    restarts = [e["message"] for e in events
                if e["level"] == "warn" and e["message"].startswith("a trainer actor failed")]
    assert len(restarts) == 1, [e["message"] for e in events]
    assert restarts[0].endswith("the 2 trainers restart from the last update and run this "
                                "one again")
    train(config_from_dict(ray_task_config(tiny_model_dir, toy_train_file, local, "local",
                                           fast_path="off")))
    from ray.util.state import list_actors

    ranks = list_actors(address=ray_cluster.dashboard_url, detail=True,
                        filters=[("class_name", "=", "TrainerRank")])
    assert len(ranks) == 4 and {a.state for a in ranks} == {"DEAD"}  # 2 + 2 restarted
    on_ray, here = metrics(two), metrics(local)
    assert [r["step"] for r in on_ray] == [1, 2, 3]
    assert len({r["train_reward_mean"] for r in here}) > 1  # groups differ: weights move
    for ray_row, local_row in zip(on_ray, here, strict=True):
        for key in ("train_reward_mean", "completion_tokens_mean", "zero_variance_groups",
                    "learning_rate"):
            assert ray_row[key] == local_row[key], key
        for key in ("loss", "entropy", "clip_fraction"):
            assert ray_row[key] == pytest.approx(local_row[key], abs=1e-6), key
        assert ray_row["grad_norm"] == pytest.approx(local_row["grad_norm"], rel=1e-5)
    assert [(s["output_text"], s["score"]) for s in samples(two)] == \
           [(s["output_text"], s["score"]) for s in samples(local)]
    local_weights = adapter(local)
    for name, tensor in adapter(two).items():
        torch.testing.assert_close(tensor, local_weights[name], rtol=0, atol=1e-4)
    # the driver checkpoints rank 0's AdamW moments: a resume continues the same run
    ray_state, local_state = (optimizer_state(run / "checkpoints" / "step-3")
                              for run in (two, local))
    assert ray_state.keys() == local_state.keys() and len(ray_state) > 0
    for name, tensor in ray_state.items():
        torch.testing.assert_close(tensor, local_state[name], rtol=1e-3, atol=1e-6)


def test_a_cluster_too_small_for_the_trainers_fails_in_one_line(ray_cluster, tiny_model_dir,
                                                                toy_train_file, tmp_path):
    """2 trainers x 1 CPU + 1 rollout worker x 1 CPU (+ 0.5 for grading) do not fit the
    2-CPU cluster: the run stops before reserving anything, naming the knobs."""
    from openrft.distributed.cluster import ClusterError

    config = ray_task_config(tiny_model_dir, toy_train_file, tmp_path / "run", "ray",
                             ray={"address": ray_cluster.address, "trainers": 2})
    with pytest.raises(ClusterError) as error:
        train(config_from_dict(config))
    assert str(error.value) == (
        "the Ray cluster has 2 CPUs but expert.ray asks for 3.5: 2 trainers x 1 "
        "(cpus_per_trainer) + 1 rollout workers x 1 (cpus_per_rollout_worker) + one "
        "grading task's 0.5 (cpus_per_grading_task)")


def test_killed_rollout_actor_mid_generation_is_replaced_and_its_prompts_retried(
        ray_driver, tiny_model_dir):
    import psutil

    from openrft.distributed.rollout import RayRolloutEngine
    from openrft.models.load import LoraSettings, load_model

    lora = LoraSettings(rank=2, alpha=4, dropout=0.0)
    loaded = load_model(str(tiny_model_dir), dtype="float32", trainable=True, lora=lora)
    prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(4)]
    params = GenerationParams(max_tokens=160, min_tokens=160, seed=11)
    engine = RayRolloutEngine(loaded.model, loaded.tokenizer, RaySettings(rollout_workers=2))
    try:
        expected = engine.generate(prompts, 2, params)
        victim = psutil.Process(ray_driver.get(engine.workers[1].pid.remote()))
        result: list = []
        sampling = threading.Thread(target=lambda: result.append(
            engine.generate(prompts, 2, params)))
        idle_cpu = sum(victim.cpu_times()[:2])
        sampling.start()
        deadline = time.monotonic() + 60
        while sum(victim.cpu_times()[:2]) - idle_cpu < 0.05:  # it is generating now
            assert time.monotonic() < deadline, "the actor never started generating"
            time.sleep(0.01)
        victim.kill()
        sampling.join(timeout=120)
        assert engine.replaced == 1
        assert result == [expected]  # same shard, same seed: the same completions
        assert len(expected) == 8 and [s.prompt_index for s in expected] == [0, 0, 1, 1, 2, 2,
                                                                             3, 3]
    finally:
        engine.close()


def openrft_train(config: Path, log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from openrft.cli import main; main()", "train", str(config),
         *args], stdout=log.open("ab"), stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})


def wait_for_checkpoint(run: Path, step: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / f"step-{step}").is_dir():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.02)


def freeze(process: subprocess.Popen, run: Path) -> int:
    """Stop `process` where it stands (SIGSTOP); the number of checkpoints it saved."""
    process.send_signal(signal.SIGSTOP)
    return len(list((run / "checkpoints").glob("step-[0-9]")))


def test_killed_trainer_and_killed_head_lose_nothing(ray_cluster, ray_run, tiny_model_dir,
                                                     toy_train_file, tmp_path):
    import yaml

    run = tmp_path / "run"
    config = tmp_path / "config.yaml"
    body = ray_task_config(tiny_model_dir, toy_train_file, run, "ray", ray_cluster.address)
    config.write_text(yaml.safe_dump(body))
    log = tmp_path / "train.log"

    # 1. the trainer is killed after its first checkpoint
    first = openrft_train(config, log)
    wait_for_checkpoint(run, 1, first, log)
    saved = freeze(first, run)
    first.kill()
    first.wait()
    assert saved < 3, "the run finished before the kill; the test proves nothing"

    # 2. the resumed run loses the whole head node after its next checkpoint
    second = openrft_train(config, log, "--resume")
    wait_for_checkpoint(run, saved + 1, second, log)
    saved = freeze(second, run)
    assert saved < 3, "the run finished before the head was killed"
    ray_cluster.stop()
    second.send_signal(signal.SIGCONT)
    assert second.wait(timeout=120) == 2, log.read_text()[-3000:]
    assert "error: lost the Ray cluster: its head at" in log.read_text()
    assert "resume the run once the cluster is back" in log.read_text()

    # 3. with the cluster back, a second resume finishes the run
    ray_cluster.start()
    third = openrft_train(config, log, "--resume")
    assert third.wait(timeout=300) == 0, log.read_text()[-3000:]

    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert len([e for e in events if e["message"].startswith("Resumed from")]) == 2
    assert [r["step"] for r in metrics(run)] == [1, 2, 3]  # each step once
    assert metrics(run) == metrics(ray_run)  # bit for bit the uninterrupted run
    reference = adapter(ray_run)
    for name, tensor in adapter(run).items():
        assert torch.equal(tensor, reference[name]), name


@pytest.mark.parametrize("weight_sync", ["object_store", "collective"])
def test_async_mode_on_ray_matches_the_local_async_mode(ray_cluster, tiny_model_dir,
                                                        toy_train_file, tmp_path, weight_sync):
    """max_staleness 1 on the cluster: the actors sample step t+1's batch with the weights
    they were last sent while the trainer updates step t, then take the new ones, through
    the object store or by broadcast. The versions, samples and updates are those of the
    local backend's async mode."""
    on_ray, local = tmp_path / "ray", tmp_path / "local"
    config = ray_task_config(tiny_model_dir, toy_train_file, on_ray, "ray",
                             ray_cluster.address, max_staleness=1)
    config["expert"]["ray"]["weight_sync"] = weight_sync
    train(config_from_dict(config))
    train(config_from_dict(ray_task_config(tiny_model_dir, toy_train_file, local, "local",
                                           max_staleness=1)))
    ray_rows, local_rows = metrics(on_ray), metrics(local)
    assert [(r["policy_version"], r["staleness"]) for r in ray_rows] == [(0, 0), (0, 1), (1, 1)]
    for ray_row, local_row in zip(ray_rows, local_rows, strict=True):
        for key in ("policy_version", "train_reward_mean", "completion_tokens_mean",
                    "clip_fraction"):
            assert ray_row[key] == local_row[key], key
        assert ray_row["loss"] == pytest.approx(local_row["loss"], abs=1e-6)
    assert [(s["output_text"], s["score"]) for s in samples(on_ray)] == \
           [(s["output_text"], s["score"]) for s in samples(local)]
    local_weights = adapter(local)
    for name, tensor in adapter(on_ray).items():
        assert torch.equal(tensor, local_weights[name]), name


class AfterFirstStep(NullReporter):
    """Kills the rollout actor once step 1 is reported, while it is in a `generate` call
    (Ray titles an actor's process `ray::Class.method` while it runs one): with
    max_staleness 1 the actor is then sampling a later batch ahead of the trainer."""

    def __init__(self) -> None:
        self.stepped = threading.Event()
        self.killed: list[int] = []
        self.watcher = threading.Thread(target=self._kill_when_generating, daemon=True)
        self.watcher.start()

    def on_step(self, metrics: dict) -> None:
        self.stepped.set()

    def _kill_when_generating(self) -> None:
        import psutil

        self.stepped.wait(timeout=300)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for process in psutil.process_iter(["cmdline"]):
                if "ray::RolloutWorker.generate" in " ".join(process.info["cmdline"] or []):
                    process.kill()
                    self.killed.append(process.pid)
                    return
            time.sleep(0.005)


def test_async_mode_killed_rollout_actor_is_replaced_and_its_prompts_retried(
        ray_cluster, tiny_model_dir, toy_train_file, tmp_path):
    """max_staleness 1 on the cluster, the rollout actor killed in the middle of sampling
    ahead: its prompts run again on a new actor with the same shard seed, so the run ends
    with its 3 steps, bit for bit the local async run, and a warn event says so."""
    on_ray, local = tmp_path / "ray", tmp_path / "local"
    long = {"max_staleness": 1, "max_tokens": 128}  # a generate call long enough to hit
    killer = AfterFirstStep()
    result = train(config_from_dict(ray_task_config(
        tiny_model_dir, toy_train_file, on_ray, "ray", ray_cluster.address, **long)), killer)
    killer.watcher.join(timeout=1)
    assert len(killer.killed) == 1, "no generate call was caught in flight"
    assert result.steps == 3
    train(config_from_dict(ray_task_config(tiny_model_dir, toy_train_file, local, "local",
                                           **long)))
    events = [json.loads(line) for line in (on_ray / "events.jsonl").read_text().splitlines()]
    retried = [e for e in events if e["level"] == "warn" and "rollout actor 0 died" in
               e["message"] and e["message"].endswith("retrying its 2 prompts on a new one")]
    assert len(retried) == 1, [e["message"] for e in events]
    ray_rows, local_rows = metrics(on_ray), metrics(local)
    assert [r["step"] for r in ray_rows] == [1, 2, 3]
    assert [(r["policy_version"], r["staleness"]) for r in ray_rows] == [(0, 0), (0, 1), (1, 1)]
    for ray_row, local_row in zip(ray_rows, local_rows, strict=True):
        for key in ("train_reward_mean", "completion_tokens_mean", "loss"):
            assert ray_row[key] == local_row[key], key
    assert [s["output_text"] for s in samples(on_ray)] == \
           [s["output_text"] for s in samples(local)]
    local_weights = adapter(local)
    for name, tensor in adapter(on_ray).items():
        assert torch.equal(tensor, local_weights[name]), name
