"""Where a run's rollouts and grading happen: in this process, or on a Ray cluster (and
there, with `ray.trainers` > 1, the update too).

`open_backend` hands the trainer a RolloutEngine and a reward function either way (and
sets the policy's training path to the trainer actors' when there are some), so the
training loop does not know which backend it runs on (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openrft.graders.base import RewardFn, make_reward_fn
from openrft.rl.config import ResolvedConfig
from openrft.rl.policy_setup import make_rollout_engine
from openrft.rl.step import Policy
from openrft.rollout.engine import RolloutEngine


@dataclass
class Backend:
    engine: RolloutEngine
    reward_fn: RewardFn
    close: Callable[[], None]  # releases graders, actors and the cluster connection
    notices: Callable[[], list[str]] = list  # drains what the run's events should say
    # (a Ray rollout actor replaced, ...); the local backend has nothing to say


def open_backend(cfg: ResolvedConfig, policy: Policy, tokenizer: Any) -> Backend:
    """The engine and reward function of `cfg.backend` for the policy being trained."""
    if cfg.backend == "ray":
        return _open_ray(cfg, policy, tokenizer)
    reward_fn, grader = make_reward_fn(cfg.grader)
    return Backend(make_rollout_engine(cfg, policy, tokenizer), reward_fn, grader.close)


def _open_ray(cfg: ResolvedConfig, policy: Policy, tokenizer: Any) -> Backend:
    """Rollout actors and grading tasks; with `ray.trainers` > 1 also the data-parallel
    trainer actors, which then run the policy's update (distributed/trainers.py)."""
    from openrft.distributed.cluster import connect, disconnect, require_ray
    from openrft.distributed.grading import RayGrading
    from openrft.distributed.rollout import RayRolloutEngine
    from openrft.distributed.trainers import DataParallelPath, RayTrainers, check_capacity

    settings = cfg.ray
    started = connect(settings.address)
    opened: list[Callable[[], None]] = [disconnect] if started else []
    try:
        check_capacity(require_ray().cluster_resources().get("CPU", 0.0), settings)
        notices = []
        if settings.trainers > 1:
            trainers = RayTrainers(cfg, policy, settings)
            opened.append(trainers.close)
            notices.append(trainers.notices)
            policy.path = DataParallelPath(trainers)
        engine = RayRolloutEngine(policy.model, tokenizer, settings, cfg.engine)
        opened.append(engine.close)
        notices.append(engine.notices)
        grading = RayGrading(cfg.grader, settings)
    except BaseException:
        _close_all(opened)
        raise
    opened.append(grading.close)
    return Backend(engine, grading, lambda: _close_all(opened),
                   lambda: [message for source in notices for message in source.drain()])


def _close_all(opened: list[Callable[[], None]]) -> None:
    """Close what was opened, newest first (the cluster connection last)."""
    for close in reversed(opened):
        close()
