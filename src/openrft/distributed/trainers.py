"""Data-parallel trainer actors (`expert.ray.trainers` > 1) and the `TrainingPath` that
runs a step's update on them.

Each actor (`TrainerRank`) holds a copy of the policy with its own AdamW and LR schedule,
built from the driver's states, and joins a gloo group whose store rank 0 serves on its
node. An update sends the whole packed batch to every rank; each updates on its shard
and the gradients are summed (distributed/data_parallel.py), so the ranks stay identical.
Rank 0 then returns the new trainable weights and its optimizer and schedule states,
which the driver loads into its own policy: the driver's copy is the one the rollout
actors are synced from, checkpointed, validated and reported, exactly as with one
trainer. That costs three trainable-weight transfers per step (small for LoRA).

The ranks run the plain update (rl/update.py): the fast path's replay needs the rollout's
forward recorded in the process that updates, and its other tricks are not verified
sharded. CPU (gloo) is verified in CI; no NCCL path is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
    wait_each,
)
from openrft.distributed.rollout import cpu_copy
from openrft.distributed.settings import RaySettings
from openrft.rl.config import ResolvedConfig
from openrft.rl.logprobs import TokenBatch
from openrft.rl.step import PlainPath, Policy
from openrft.rl.update import UpdateStats
from openrft.rl.weights import Weights, load_weights, trainable_weights
from openrft.rollout.engine import CausalLM

log = logging.getLogger(__name__)

GLOO_TIMEOUT_S = 600.0  # how long a rank waits for the others in one collective


def check_capacity(cluster_cpus: float, settings: RaySettings) -> None:
    """One line naming the knobs when the actors a run reserves (trainers, when more than
    one, and rollout workers) leave no room for a grading task: a run that started
    anyway would wait forever for its placement or its grading."""
    trainers = settings.trainers if settings.trainers > 1 else 0  # 1: in the driver
    needed = (trainers * settings.cpus_per_trainer
              + settings.rollout_workers * settings.cpus_per_rollout_worker
              + settings.cpus_per_grading_task)
    if needed > cluster_cpus:
        raise ClusterError(
            f"the Ray cluster has {cluster_cpus:g} CPUs but expert.ray asks for {needed:g}: "
            f"{trainers} trainers x {settings.cpus_per_trainer:g} (cpus_per_trainer) + "
            f"{settings.rollout_workers} rollout workers x "
            f"{settings.cpus_per_rollout_worker:g} (cpus_per_rollout_worker) + one grading "
            f"task's {settings.cpus_per_grading_task:g} (cpus_per_grading_task)")


@dataclass
class StartState:
    """What every rank starts from: the driver's policy and its optimizer and schedule
    states (so a resumed run's ranks continue its checkpoint)."""

    model: CausalLM
    reference: CausalLM | None
    pad_token_id: int
    autocast_dtype: torch.dtype | None
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]

    @classmethod
    def of(cls, policy: Policy) -> StartState:
        """The driver's state as the trainers take it: the models on CPU (gloo's tensors;
        a GPU driver's copies are shipped to CPU, untried on a GPU)."""
        reference = None if policy.reference is None else cpu_copy(policy.reference)
        return cls(cpu_copy(policy.model), reference, policy.pad_token_id,
                   policy.autocast_dtype, policy.optimizer.state_dict(),
                   policy.scheduler.state_dict())


class TrainerRank:
    """Runs inside a Ray actor: one rank's policy copy, optimizer and gloo group."""

    def __init__(self, cfg: ResolvedConfig, start: StartState, rank: int, world: int,
                 threads: int) -> None:
        from openrft.rl.policy_setup import make_optimizer

        torch.set_num_threads(threads)
        optimizer, scheduler = make_optimizer(cfg, start.model)
        optimizer.load_state_dict(start.optimizer)
        scheduler.load_state_dict(start.scheduler)
        self.policy = Policy(start.model, start.reference, optimizer, scheduler,
                             start.pad_token_id, start.autocast_dtype, PlainPath())
        self.cfg, self.rank, self.world = cfg, rank, world
        self.store: Any = None
        self.group: Any = None

    def serve_store(self) -> tuple[str, int]:
        """Rank 0: the (host, port) of the group's store, on a free port of this node."""
        import ray
        import torch.distributed as dist

        host = ray.util.get_node_ip_address()
        self.store = dist.TCPStore(host, 0, self.world, is_master=True,
                                   wait_for_workers=False)
        return host, self.store.port

    def join(self, host: str, port: int) -> None:
        """Meet the other ranks at rank 0's store (every rank calls this at once)."""
        import torch.distributed as dist

        from openrft.distributed.weight_sync import process_group

        if self.store is None:
            self.store = dist.TCPStore(host, port, self.world, is_master=False)
        self.group = process_group("gloo", self.store, self.rank, self.world, GLOO_TIMEOUT_S)

    def update(self, batch: TokenBatch, advantages: torch.Tensor, behaviour: Weights | None
               ) -> tuple[UpdateStats, Weights, dict[str, Any], dict[str, Any]] | UpdateStats:
        """This rank's share of the update; rank 0 also returns what the driver mirrors:
        (stats, trainable weights, optimizer state, schedule state)."""
        from openrft.distributed.data_parallel import sharded_update

        stats = sharded_update(self.policy, self.cfg, batch, advantages, self.rank,
                               self.world, self.group, behaviour)
        if self.rank != 0:
            return stats
        return (stats, trainable_weights(self.policy.model),
                self.policy.optimizer.state_dict(), self.policy.scheduler.state_dict())


class RayTrainers:
    """`settings.trainers` TrainerRank actors, started from the driver's policy."""

    def __init__(self, cfg: ResolvedConfig, policy: Policy, settings: RaySettings) -> None:
        self.ray = require_ray()
        rows = cfg.batch_size * cfg.group_size
        if rows < settings.trainers:
            raise ClusterError(f"expert.ray.trainers is {settings.trainers} but a step has "
                               f"only {rows} sequences to share between them")
        self.cfg, self.settings = cfg, settings
        self.notices = Notices()  # trainers restarted, for the run's events
        self._group = reserve(self.ray, {"CPU": settings.cpus_per_trainer}, settings.trainers,
                              "trainers", "PACK", settings.placement_timeout_s)
        self.ranks: list[Any] = []
        self._start(policy)

    def _start(self, policy: Policy) -> None:
        """Start every rank from `policy`'s state and let them meet."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        settings = self.settings
        actor = self.ray.remote(TrainerRank)
        start = self.ray.put(StartState.of(policy))
        threads = max(1, int(settings.cpus_per_trainer))
        self.ranks = [actor.options(
            num_cpus=settings.cpus_per_trainer, max_restarts=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=self._group, placement_group_bundle_index=rank),
        ).remote(self.cfg, start, rank, settings.trainers, threads)
            for rank in range(settings.trainers)]
        host, port = wait(self.ranks[0].serve_store.remote())
        wait([rank.join.remote(host, port) for rank in self.ranks])

    def update(self, policy: Policy, batch: TokenBatch, advantages: torch.Tensor,
               behaviour: Weights | None) -> UpdateStats:
        """Run the update on the ranks and load rank 0's result into `policy`. When a rank
        dies, every rank restarts from `policy`, which still holds the state before this
        update (the mirror of the last one), and the update runs again: the same result."""
        errors = (self.ray.exceptions.RayActorError, self.ray.exceptions.RayTaskError)
        shared = [self.ray.put(value) for value in (batch, advantages, behaviour)]
        retries = self.settings.max_trainer_retries
        for attempt in range(retries + 1):
            try:
                result = wait_each([rank.update.remote(*shared) for rank in self.ranks])[0]
                break
            except errors as exc:  # a rank died, or its peer's death broke its collective
                if not head_reachable():
                    raise lost_head_error() from None
                if attempt == retries:
                    raise ClusterError(f"the trainers failed {attempt + 1} times on one update; "
                                       f"last error: {first_line(exc)}") from None
                self.notices.add(f"a trainer actor failed ({first_line(exc)}); the "
                                 f"{len(self.ranks)} trainers restart from the last update "
                                 "and run this one again")
                self._kill_ranks()
                self._start(policy)
        stats, weights, optimizer_state, scheduler_state = result
        load_weights(policy.model, weights)
        policy.optimizer.load_state_dict(optimizer_state)
        policy.scheduler.load_state_dict(scheduler_state)
        return stats

    def _kill_ranks(self) -> None:
        for rank in self.ranks:
            self.ray.kill(rank, no_restart=True)
        self.ranks = []

    def close(self) -> None:
        """Release the actors and their reservation (nothing to release on a lost head)."""
        from ray.util.placement_group import remove_placement_group

        if not head_reachable():
            return
        self._kill_ranks()
        remove_placement_group(self._group)


class DataParallelPath(PlainPath):
    """The `TrainingPath` (rl/step.py) of a run with trainer actors: the plain decode and
    sampling (the rollout actors sample), the update on the trainers."""

    def __init__(self, trainers: RayTrainers) -> None:
        self.trainers = trainers

    def update(self, policy: Policy, cfg: ResolvedConfig, batch: TokenBatch,
               advantages: torch.Tensor, behaviour: Weights | None = None) -> UpdateStats:
        return self.trainers.update(policy, batch, advantages, behaviour)
