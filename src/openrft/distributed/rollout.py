"""`RayRolloutEngine`: the RolloutEngine protocol served by rollout actors on a Ray cluster.

Each actor (`RolloutWorker`) holds its own copy of the policy and a local engine (HF, or
vLLM on a GPU node). A batch's prompts are cut into one contiguous shard per actor; each
shard samples with a seed that depends on the shard, not on the actor, so a shard that
is retried on a replacement actor samples the same tokens. A dead actor is replaced by a
new one built from the initial policy plus the latest weights, and its shard runs again.

After every update the trainable weights (LoRA adapters, or every weight in full
fine-tuning) reach the actors one of two ways (`expert.ray.weight_sync`):
- "object_store": put into Ray's object store once; every actor loads them.
- "collective": broadcast from this process (rank 0) to the actors (ranks 1..N) over a
  torch.distributed group formed at start (distributed/weight_sync.py): gloo for CPU
  weights, NCCL when this process's weights and the actors are on GPUs. Before each sync
  the actors are pinged; a dead one is replaced and the group formed anew, and a join or
  broadcast that fails part-way is retried on a new group. An actor that replaces one
  mid-step takes the latest weights through the object store (the others are sampling,
  so no group can form then); the group is formed anew at the next sync.

CPU is verified in CI, gloo included; the GPU path (`gpus_per_rollout_worker > 0`: the
actor moves its copy to CUDA; NCCL for the collective sync) awaits a GPU.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
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
from openrft.distributed.weight_sync import (
    Backend,
    Layout,
    WeightSyncError,
    WeightSyncGroup,
    choose_backend,
    connect_store,
    layout_of,
    serve_store,
)
from openrft.rl.weights import (
    Weights,
    cpu_copies,
    load_weights,
    trainable_parameters,
    trainable_weights,
)
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
        self.device = device
        self.engine = make_engine(self.model, tokenizer, engine)
        self.sync: WeightSyncGroup | None = None  # weight_sync "collective": its group

    def generate(self, prompts: list[Messages], n: int, params: GenerationParams) -> list[Sample]:
        return self.engine.generate(prompts, n, params)

    def load_weights(self, weights: Weights) -> None:
        load_weights(self.model, weights)
        self.engine.sync_weights(self.model)

    def join(self, host: str, port: int, rank: int, world: int, backend: Backend) -> None:
        """Meet the trainer's weight-sync group at its store (leaving any earlier group);
        fails on every rank if this copy's trainable weights differ from the trainer's."""
        if self.sync is not None:
            self.sync.close()
            self.sync = None
        store = connect_store(host, port, world)
        device = "cpu" if backend == "gloo" else self.device
        self.sync = WeightSyncGroup(store, rank, world, backend,
                                    layout_of(trainable_parameters(self.model)), device)

    def receive(self) -> None:
        """Take the trainer's broadcast of its trainable weights into this copy."""
        if self.sync is None:
            raise RuntimeError("receive before join")
        self.sync.receive(trainable_parameters(self.model))
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
        self._weights: Any = None  # ObjectRef of the latest trainable weights, for new actors
        self.replaced = 0  # actors replaced after they died
        self.notices = Notices()  # actors replaced, for the run's events
        self._group = _reserve(self.ray, settings)
        self.workers = [self._start_worker(i, None) for i in range(settings.rollout_workers)]
        self._collective: Broadcaster | None = None
        if settings.weight_sync == "collective":
            self._collective = Broadcaster.of(model, settings)
            try:
                self._sync_collective()  # forms the group: the actors hold these weights
            except BaseException:
                self.close()
                raise

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
        an actor built with them). The collective sync broadcasts the parameters
        themselves, where they live (a GPU under NCCL): no copy through host memory."""
        if self._collective is not None:
            self.load_weights(trainable_parameters(model))
        else:
            self.load_weights(trainable_weights(model))

    def load_weights(self, weights: Weights) -> None:
        """Every actor samples with `weights` from now on (the async mode sends the
        version a batch must be sampled with, rl/pipeline.py)."""
        if self._collective is not None:
            self._collective.latest, self._weights = weights, None
            self._sync_collective()
            return
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
        """Release the weight-sync group, the actors and their reservation (nothing to
        release on a lost head)."""
        from ray.util.placement_group import remove_placement_group

        if self._collective is not None:
            self._collective.drop()
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

    def _sync_collective(self) -> None:
        """weight_sync "collective": replace dead actors, form the group when it lacks one,
        and broadcast the latest weights. A join or broadcast that fails (an actor died in
        it) is tried again on a new group, up to `max_rollout_retries` times."""
        assert self._collective is not None
        sync, retries = self._collective, self.settings.max_rollout_retries
        for attempt in range(retries + 1):
            self._replace_dead()
            try:
                if sync.group is None:
                    self._form_group(sync)
                if sync.latest is not None:
                    self._broadcast(sync, sync.latest)
                return
            except WeightSyncError:
                raise  # the copies differ: no retry can help
            except (RuntimeError, self.ray.exceptions.RayError) as exc:
                self._check_head()
                sync.drop()
                if attempt == retries:
                    raise ClusterError(f"the weight sync to the rollout actors failed "
                                       f"{attempt + 1} times; last error: "
                                       f"{first_line(exc)}") from None
                log.warning("weight sync failed (%s); forming a new group", first_line(exc))

    def _replace_dead(self) -> None:
        """Ping every actor and replace the dead ones, from the initial policy: the
        broadcast that follows brings them the latest weights."""
        pings = [worker.pid.remote() for worker in self.workers]
        for i, ping in enumerate(pings):
            try:
                wait(ping)
            except self.ray.exceptions.RayActorError as exc:
                self._check_head()
                self.notices.add(f"rollout actor {i} died ({first_line(exc)}); a new one "
                                 "takes the weights")
                self._replace(i, with_weights=False)

    def _form_group(self, sync: Broadcaster) -> None:
        """Rank 0 (this process) serves a fresh store on a free port; every actor joins."""
        world = 1 + len(self.workers)
        host = self.ray.util.get_node_ip_address()
        sync.store = serve_store(host, world)
        calls = [worker.join.remote(host, sync.store.port, rank, world, sync.backend)
                 for rank, worker in enumerate(self.workers, start=1)]
        try:
            sync.group = WeightSyncGroup(sync.store, 0, world, sync.backend, sync.layout,
                                         sync.device)
        finally:
            error = self._settle(calls)
        if error is not None:
            raise error

    def _broadcast(self, sync: Broadcaster, weights: Weights) -> None:
        assert sync.group is not None
        calls = [worker.receive.remote() for worker in self.workers]
        try:
            sync.group.send(weights)
        finally:
            error = self._settle(calls)
        if error is not None:
            raise error

    def _settle(self, calls: list[Any]) -> BaseException | None:
        """Wait for every call, so no actor is left inside the group, and return the first
        failure (None: every call succeeded)."""
        first: BaseException | None = None
        for call in calls:
            try:
                wait(call)
            except self.ray.exceptions.RayError as exc:
                first = first or exc
        return first

    def _check_head(self) -> None:
        """An actor died: if the head died with it, say so instead of replacing it."""
        if not head_reachable():
            raise lost_head_error() from None

    def _replace(self, index: int, with_weights: bool = True) -> None:
        """A new actor in `index`'s place: the initial policy plus (`with_weights`) the
        latest weights through the object store."""
        self.ray.kill(self.workers[index], no_restart=True)
        self.workers[index] = self._start_worker(index,
                                                 self._latest_ref() if with_weights else None)
        self.replaced += 1
        if self._collective is not None:  # the group lacks the new actor: formed anew
            self._collective.drop()

    def _latest_ref(self) -> Any:
        """ObjectRef of the latest weights (the collective sync puts them into the object
        store only when an actor is replaced)."""
        sync = self._collective
        if self._weights is None and sync is not None and sync.latest is not None:
            self._weights = self.ray.put(cpu_copies(sync.latest))
        return self._weights

    def _start_worker(self, index: int, weights: Any) -> Any:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        s = self.settings
        device = "cuda" if s.gpus_per_rollout_worker > 0 else "cpu"
        return self._actor_class.options(
            num_cpus=s.cpus_per_rollout_worker, num_gpus=s.gpus_per_rollout_worker,
            max_restarts=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=self._group, placement_group_bundle_index=index),
        ).remote(self._model, self._tokenizer, weights, self.engine_kind,
                 max(1, int(s.cpus_per_rollout_worker)), device)


@dataclass
class Broadcaster:
    """This process's side of weight_sync "collective": rank 0 of a group with the
    actors, and the weights a new actor must end with."""

    backend: Backend
    layout: Layout
    device: torch.device  # where the broadcast buffers live: CPU (gloo) or the trainer's GPU
    # the last weights sent: the live parameters after `sync_weights` (unchanged until
    # the next update, and a replacement actor within a step needs no other), or the
    # async mode's snapshot of a version
    latest: Weights | None = None
    group: WeightSyncGroup | None = None
    store: Any = None  # the group's TCPStore, served here

    @classmethod
    def of(cls, model: Any, settings: RaySettings) -> Broadcaster:
        params = trainable_parameters(model)
        device = next(iter(params.values())).device if params else torch.device("cpu")
        backend = choose_backend(device, settings.gpus_per_rollout_worker)
        return cls(backend, layout_of(params),
                   device if backend == "nccl" else torch.device("cpu"))

    def drop(self) -> None:
        """Close this end of the group and its store (the next group gets a fresh port)."""
        if self.group is not None:
            self.group.close()
        self.group = self.store = None


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

