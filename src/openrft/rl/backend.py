"""Where a run's rollouts and grading happen: in this process, or on a Ray cluster.

`open_backend` hands the trainer a RolloutEngine and a reward function either way, so
the training loop does not know which backend it runs on (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openrft.graders.base import RewardFn, make_reward_fn
from openrft.rl.config import ResolvedConfig
from openrft.rl.policy_setup import make_rollout_engine
from openrft.rl.step import Policy
from openrft.rollout.engine import CausalLM, RolloutEngine


@dataclass
class Backend:
    engine: RolloutEngine
    reward_fn: RewardFn
    close: Callable[[], None]  # releases graders, actors and the cluster connection


def open_backend(cfg: ResolvedConfig, policy: Policy, tokenizer: Any) -> Backend:
    """The engine and reward function of `cfg.backend` for the policy being trained."""
    if cfg.backend == "ray":
        return _open_ray(cfg, policy.model, tokenizer)
    reward_fn, grader = make_reward_fn(cfg.grader)
    return Backend(make_rollout_engine(cfg, policy, tokenizer), reward_fn, grader.close)


def _open_ray(cfg: ResolvedConfig, model: CausalLM, tokenizer: Any) -> Backend:
    from openrft.distributed.cluster import connect, disconnect
    from openrft.distributed.grading import RayGrading
    from openrft.distributed.rollout import RayRolloutEngine

    settings = cfg.ray
    started = connect(settings.address)
    try:
        engine = RayRolloutEngine(model, tokenizer, settings, cfg.engine)
        grading = RayGrading(cfg.grader, settings)
    except BaseException:
        if started:
            disconnect()
        raise

    def close() -> None:
        engine.close()
        grading.close()
        if started:
            disconnect()

    return Backend(engine, grading, close)
