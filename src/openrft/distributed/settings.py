"""`expert.ray`: where a `backend: ray` run spreads its work. Plain settings, importable
without ray (rl/config.py holds them for every run)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from openrft.strict_model import StrictModel


class RaySettings(StrictModel):
    """Where and how a `backend: ray` run spreads its rollouts, grading and (with
    `trainers` > 1) its update (docs/scaling.md)."""

    address: str | None = None
    """Ray cluster to join ("HOST:6379" or "auto"). None: the RAY_ADDRESS environment
    variable, else a Ray instance started for this run on this machine."""
    rollout_workers: int = Field(default=1, ge=1)
    """Rollout actors, each holding a copy of the policy; a batch's prompts are split
    between them. 1 samples exactly what the local backend samples."""
    cpus_per_rollout_worker: float = Field(default=1.0, gt=0)
    """CPUs each rollout actor reserves (also its torch thread count)."""
    gpus_per_rollout_worker: float = Field(default=0.0, ge=0)
    """GPUs each rollout actor reserves (> 0: the actor moves its copy to CUDA)."""
    weight_sync: Literal["object_store", "collective"] = "object_store"
    """How the trainable weights reach the rollout actors after each update.
    "object_store": put once into Ray's object store, each actor fetches and loads them;
    simple and robust, and cheap for LoRA adapters. "collective": broadcast from this
    process over a torch.distributed group (gloo on CPU; NCCL when the trainer's weights
    and the actors are on GPUs), without serialising through the object store; meant for
    large full-fine-tuning weights and GPUs (distributed/weight_sync.py)."""
    grading_tasks: int = Field(default=2, ge=1)
    """Ray tasks one batch's grading is split into (sandboxes and model-grader calls
    spread over the cluster's nodes)."""
    cpus_per_grading_task: float = Field(default=0.5, gt=0)
    """CPUs each grading task reserves."""
    max_rollout_retries: int = Field(default=2, ge=0)
    """Times a rollout shard whose actor died is retried on a replacement actor."""
    placement_timeout_s: float = Field(default=300.0, gt=0)
    """How long to wait for the cluster to have room for every rollout worker (and
    trainer)."""
    trainers: int = Field(default=1, ge=1)
    """Data-parallel trainer actors (> 1): each holds a policy copy and updates on its
    shard of a step's batch; gradients are summed over them with torch.distributed
    (gloo), so the update is the one-process update up to float summation order
    (distributed/trainers.py). 1: the update runs in the driving process."""
    cpus_per_trainer: float = Field(default=1.0, gt=0)
    """CPUs each trainer actor reserves (also its torch thread count)."""
    max_trainer_retries: int = Field(default=1, ge=0)
    """Times one update runs again, on trainers restarted from the driver's copy of the
    policy, after a trainer actor died."""
