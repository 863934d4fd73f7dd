"""`expert.ray.weight_sync: collective` on the local Ray cluster: the rollout actors get the
trainer's weights by a gloo broadcast instead of the object store, and sample, train and
recover from a dead actor exactly as the object-store path does."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import torch
from ray_task import ray_task_config
from test_ray_training import KillAfterStep, adapter, metrics, samples

from openrft.distributed.settings import RaySettings
from openrft.distributed.shards import shard_bounds, shard_seed
from openrft.rl.config import config_from_dict
from openrft.rl.trainer import train
from openrft.rollout.engine import GenerationParams

pytestmark = pytest.mark.slow

PROMPTS = [[{"role": "user", "content": f"question {i}"}] for i in range(3)]
PARAMS = GenerationParams(max_tokens=8, min_tokens=8, seed=11)


def two_workers(address: str | None, weight_sync: str) -> dict:
    """Two rollout actors on the 2-CPU cluster (plus one grading task)."""
    return {"address": address, "rollout_workers": 2, "cpus_per_rollout_worker": 0.5,
            "grading_tasks": 1, "weight_sync": weight_sync}


def tokens(batch: list) -> list[tuple[int, list[int], str]]:
    return [(s.prompt_index, s.completion_ids, s.output_text) for s in batch]


def sampled_locally(model_dir: Path, weights: dict[str, torch.Tensor]) -> list:
    """The oracle, without Ray: a fresh copy of the policy with `weights` loaded samples
    each shard with its shard's seed, as the actors must."""
    from openrft.models.load import LoraSettings, load_model
    from openrft.rl.weights import load_weights
    from openrft.rollout.factory import make_engine

    loaded = load_model(str(model_dir), dtype="float32", trainable=True,
                        lora=LoraSettings(rank=2, alpha=4, dropout=0.0))
    load_weights(loaded.model, weights)
    engine = make_engine(loaded.model.eval(), loaded.tokenizer, "hf")
    bounds = shard_bounds(len(PROMPTS), 2)
    batch = []
    for i, (start, end) in enumerate(bounds):
        shard = replace(PARAMS, seed=shard_seed(PARAMS.seed, i, len(bounds)))
        batch += [replace(s, prompt_index=s.prompt_index + start)
                  for s in engine.generate(PROMPTS[start:end], 2, shard)]
    return batch


def test_collective_sync_reaches_both_actors_and_a_dead_one_is_replaced(ray_driver,
                                                                        tiny_model_dir):
    """After `load_weights(w)` both actors sample what a local copy holding w samples, and
    nothing went through the object store. An actor SIGKILLed between two updates is found
    by the next sync, replaced with a warning, the group formed anew, and the new actor
    samples with the newest weights too."""
    from openrft.distributed.rollout import RayRolloutEngine
    from openrft.models.load import LoraSettings, load_model
    from openrft.rl.weights import trainable_weights

    lora = LoraSettings(rank=2, alpha=4, dropout=0.0)
    loaded = load_model(str(tiny_model_dir), dtype="float32", trainable=True, lora=lora)
    generator = torch.Generator().manual_seed(0)
    first = {n: w + 0.5 * torch.randn(w.shape, generator=generator)
             for n, w in trainable_weights(loaded.model).items()}
    second = {n: -2 * w for n, w in first.items()}
    expected_first = sampled_locally(tiny_model_dir, first)
    expected_second = sampled_locally(tiny_model_dir, second)
    assert tokens(expected_first) != tokens(expected_second)  # the weights change samples

    settings = RaySettings(**two_workers(None, "collective"))
    engine = RayRolloutEngine(loaded.model, loaded.tokenizer, settings)
    try:
        assert tokens(engine.generate(PROMPTS, 2, PARAMS)) != tokens(expected_first)
        engine.load_weights(first)
        assert engine._weights is None  # no object-store copy of the weights was made
        assert tokens(engine.generate(PROMPTS, 2, PARAMS)) == tokens(expected_first)

        victim = psutil.Process(ray_driver.get(engine.workers[1].pid.remote()))
        victim.kill()
        victim.wait(timeout=30)
        engine.load_weights(second)
        assert engine.replaced == 1
        [notice] = engine.notices.drain()
        assert notice.startswith("rollout actor 1 died (")
        assert notice.endswith("); a new one takes the weights")
        assert tokens(engine.generate(PROMPTS, 2, PARAMS)) == tokens(expected_second)
        assert engine._collective is not None and engine._collective.store is not None
        port = engine._collective.store.port
    finally:
        engine.close()
    with socket.socket() as probe:  # close() dropped the group and stopped its store
        assert probe.connect_ex((ray_driver.util.get_node_ip_address(), port)) != 0


@pytest.fixture(scope="module")
def object_store_run(ray_cluster, tiny_model_dir, toy_train_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("object_store") / "run"
    train(config_from_dict(ray_task_config(
        tiny_model_dir, toy_train_file, out, "ray",
        ray=two_workers(ray_cluster.address, "object_store"))))
    return out


def assert_same_run(run: Path, reference: Path) -> None:
    """Bit for bit: both paths deliver the same float32 tensors to the actors."""
    assert [r["step"] for r in metrics(run)] == [1, 2, 3]
    assert len({r["train_reward_mean"] for r in metrics(reference)}) > 1  # weights move
    assert metrics(run) == metrics(reference)
    assert [(s["output_text"], s["score"]) for s in samples(run)] == \
           [(s["output_text"], s["score"]) for s in samples(reference)]
    expected = adapter(reference)
    got = adapter(run)
    assert got.keys() == expected.keys()
    for name, tensor in got.items():
        assert torch.equal(tensor, expected[name]), name


def test_a_run_with_collective_sync_equals_the_object_store_run(
        ray_cluster, object_store_run, tiny_model_dir, toy_train_file, tmp_path):
    run = tmp_path / "run"
    train(config_from_dict(ray_task_config(
        tiny_model_dir, toy_train_file, run, "ray",
        ray=two_workers(ray_cluster.address, "collective"))))
    assert_same_run(run, object_store_run)


def test_a_rollout_actor_killed_between_steps_is_replaced_and_the_run_unchanged(
        ray_cluster, object_store_run, tiny_model_dir, toy_train_file, tmp_path):
    """SIGKILLed after step 1 (its weights synced): step 2's shard on it is retried on a new
    actor built with the latest weights, the group is formed anew for step 2's sync, and
    the run is the unkilled one, with a warn event."""
    run = tmp_path / "run"
    killer = KillAfterStep("ray::RolloutWorker")
    train(config_from_dict(ray_task_config(
        tiny_model_dir, toy_train_file, run, "ray",
        ray=two_workers(ray_cluster.address, "collective"))), killer)
    assert len(killer.killed) == 1
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    warned = [e["message"] for e in events if e["level"] == "warn"]
    assert len(warned) == 1, warned
    assert warned[0].startswith("rollout actor ")
    assert warned[0].endswith("retrying its 1 prompts on a new one")
    assert_same_run(run, object_store_run)
