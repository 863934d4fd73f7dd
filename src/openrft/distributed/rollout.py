"""`RayRolloutEngine`: the RolloutEngine protocol served by rollout actors on a Ray cluster.

Each actor (`RolloutWorker`) holds its own copy of the policy and a local engine (HF, or
vLLM on a GPU node). A batch's prompts are cut into one contiguous shard per actor; each
shard samples with a seed that depends on the shard, not on the actor, so a shard that
is retried on a replacement actor samples the same tokens. After every update the
trainable weights (LoRA adapters, or every weight in full fine-tuning) travel through
Ray's object store once and every actor loads them. A dead actor is replaced by a new one
built from the initial policy plus the latest weights, and its shard runs again.

CPU is verified in CI; the GPU path (`gpus_per_rollout_worker > 0`: the actor moves its
copy to CUDA; weights still travel through the object store, not NCCL) awaits a GPU.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import Any

import torch

from openrft.distributed.cluster import (
    ClusterError,
    Notices,
    first_line,
    head_reachable,
    lost_head_error,
    require_ray,
    reserve,
    wait,
)
from openrft.distributed.settings import RaySettings
from openrft.distributed.shards import shard_bounds, shard_seed
from openrft.rl.weights import Weights, load_weights, trainable_weights
from openrft.rollout.engine import GenerationParams, Messages, Sample

log = logging.getLogger(__name__)


class RolloutWorker:
    """Runs inside a Ray actor: a policy copy and the engine that samples from it."""

    def __init__(self, model: Any, tokenizer: Any, weights: Weights | None, engine: str,
                 threads: int, device: str) -> None:
        from openrft.rollout.factory import make_engine

        torch.set_num_threads(threads)
        if weights is not None:
            load_weights(model, weights)
        self.model = model.to(device).eval()
        self.engine = make_engine(self.model, tokenizer, engine)

    def generate(self, prompts: list[Messages], n: int, params: GenerationParams) -> list[Sample]:
        return self.engine.generate(prompts, n, params)

    def load_weights(self, weights: Weights) -> None:
        load_weights(self.model, weights)
        self.engine.sync_weights(self.model)

    def pid(self) -> int:
        import os

        return os.getpid()


class RayRolloutEngine:
    """Generates on `settings.rollout_workers` Ray actors; the trainer sees a RolloutEngine."""

    def __init__(self, model: Any, tokenizer: Any, settings: RaySettings,
                 engine: str = "hf") -> None:
        self.ray = require_ray()
        self.settings, self.engine_kind = settings, engine
        self._actor_class = self.ray.remote(RolloutWorker)
        self._model = self.ray.put(cpu_copy(model))
        self._tokenizer = self.ray.put(tokenizer)
        self._weights: Any = None  # ObjectRef of the latest trainable weights
        self.replaced = 0  # actors replaced after they died
        self.notices = Notices()  # actors replaced, for the run's events
        self._group = _reserve(self.ray, settings)
        self.workers = [self._start_worker(i) for i in range(settings.rollout_workers)]

    def generate(self, prompts: list[Messages], n: int, params: GenerationParams) -> list[Sample]:
        """len(prompts) * n samples, prompt-major, as the local engine returns them."""
        bounds = shard_bounds(len(prompts), len(self.workers))
        shard_params = [replace(params, seed=shard_seed(params.seed, i, len(bounds)))
                        for i in range(len(bounds))]
        calls = [self.workers[i].generate.remote(prompts[a:b], n, shard_params[i])
                 for i, (a, b) in enumerate(bounds)]
        samples: list[Sample] = []
        for i, (start, end) in enumerate(bounds):
            for sample in self._shard_result(i, calls[i], prompts[start:end], n, shard_params[i]):
                samples.append(replace(sample, prompt_index=sample.prompt_index + start))
        return samples

    def sync_weights(self, model: Any) -> None:
        """Send the updated trainable weights to every actor (a dead one is replaced by
        an actor built with them)."""
        self.load_weights(trainable_weights(model))

    def load_weights(self, weights: Weights) -> None:
        """Every actor samples with `weights` from now on (the async mode sends the
        version a batch must be sampled with, rl/pipeline.py)."""
        self._weights = self.ray.put(weights)
        for i, worker in enumerate(self.workers):
            try:
                wait(worker.load_weights.remote(self._weights))
            except self.ray.exceptions.RayActorError as exc:
                self._check_head()
                self.notices.add(f"rollout actor {i} died ({first_line(exc)}); a new one "
                                 "takes the weights")
                self._replace(i)

    def close(self) -> None:
        """Release the actors and their reservation (nothing to release on a lost head)."""
        from ray.util.placement_group import remove_placement_group

        if not head_reachable():
            return
        for worker in self.workers:
            self.ray.kill(worker, no_restart=True)
        self.workers = []
        remove_placement_group(self._group)

    def _shard_result(self, index: int, call: Any, prompts: list[Messages], n: int,
                      params: GenerationParams) -> list[Sample]:
        retries = self.settings.max_rollout_retries
        for attempt in range(retries + 1):
            try:
                return wait(call)
            except self.ray.exceptions.RayActorError as exc:
                self._check_head()
                if attempt == retries:
                    raise ClusterError(f"rollout shard {index} failed on {attempt + 1} actors; "
                                       f"last error: {first_line(exc)}") from None
                self.notices.add(f"rollout actor {index} died ({first_line(exc)}); "
                                 f"retrying its {len(prompts)} prompts on a new one")
                self._replace(index)
                call = self.workers[index].generate.remote(prompts, n, params)
        raise AssertionError("unreachable")

    def _check_head(self) -> None:
        """An actor died: if the head died with it, say so instead of replacing it."""
        if not head_reachable():
            raise lost_head_error() from None

    def _replace(self, index: int) -> None:
        self.ray.kill(self.workers[index], no_restart=True)
        self.workers[index] = self._start_worker(index)
        self.replaced += 1

    def _start_worker(self, index: int) -> Any:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        s = self.settings
        device = "cuda" if s.gpus_per_rollout_worker > 0 else "cpu"
        return self._actor_class.options(
            num_cpus=s.cpus_per_rollout_worker, num_gpus=s.gpus_per_rollout_worker,
            max_restarts=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=self._group, placement_group_bundle_index=index),
        ).remote(self._model, self._tokenizer, self._weights, self.engine_kind,
                 max(1, int(s.cpus_per_rollout_worker)), device)


def _reserve(ray: Any, settings: RaySettings) -> Any:
    """A placement group with one bundle per rollout worker, spread over nodes where it
    can be, reserved as a whole (a replacement actor reuses its bundle)."""
    bundle = {"CPU": settings.cpus_per_rollout_worker}
    if settings.gpus_per_rollout_worker:
        bundle["GPU"] = settings.gpus_per_rollout_worker
    return reserve(ray, bundle, settings.rollout_workers, "rollout workers", "SPREAD",
                   settings.placement_timeout_s)


def cpu_copy(model: Any) -> Any:
    """The model as the object store ships it: itself on CPU, else a CPU copy."""
    if all(p.device.type == "cpu" for p in model.parameters()):
        return model
    return copy.deepcopy(model).to("cpu")

