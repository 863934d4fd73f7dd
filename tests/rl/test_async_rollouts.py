"""AsyncRollouts' schedule and hand-offs, on an engine that says which weights it held."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import torch

from openrft.graders.base import GradeResult
from openrft.rl.pipeline import AsyncRollouts, Sampler
from openrft.rl.step import PlainPath, StepContext
from openrft.rollout.engine import GenerationParams, Sample


class VersionEngine:
    """Each completion's text is the version of the weights the engine held."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.version: int | None = None
        self.calls: list[int | None] = []
        self.loads = 0
        self.fail_on_call = fail_on_call

    def load(self, weights: dict[str, torch.Tensor]) -> None:
        self.version, self.loads = int(weights["v"]), self.loads + 1

    def generate(self, prompts, n, params):
        self.calls.append(self.version)
        if len(self.calls) == self.fail_on_call:
            raise RuntimeError("the engine broke")
        return [Sample(prompt_index=i, output_text=str(self.version))
                for i in range(len(prompts)) for _ in range(n)]

    def sync_weights(self, model) -> None:
        pass


def version(v: int) -> dict[str, torch.Tensor]:
    return {"v": torch.tensor(v)}


def pipeline(engine: VersionEngine, max_staleness: int, last: int = 4) -> AsyncRollouts:
    cfg = SimpleNamespace(seed=0, group_size=2)
    policy = SimpleNamespace(model=torch.nn.Linear(1, 1), autocast_dtype=None, path=PlainPath())
    ctx = StepContext(cfg, policy, engine, lambda samples, items: [GradeResult(1.0)] * len(
        samples), GenerationParams())  # type: ignore[arg-type]
    prompts = [[{"role": "user", "content": "q"}]]
    return AsyncRollouts(Sampler(ctx, engine.load, lambda: None), lambda step: ([{}], prompts),
                         0, last, max_staleness, version(0))


def test_each_batch_waits_for_and_is_sampled_by_its_version():
    engine = VersionEngine()
    rollouts = pipeline(engine, max_staleness=1)
    try:
        first, behaviour = rollouts.get(1)
        assert (first.version, behaviour) == (0, None)  # on-policy: no behaviour weights
        rollouts.publish(1, version(1))
        second, behaviour = rollouts.get(2)  # sampled by version 0 while step 1 updated
        assert second.version == 0 and {s.output_text for s in second.samples} == {"0"}
        assert behaviour is not None and int(behaviour["v"]) == 0
        third, _ = rollouts.get(3)
        assert third.version == 1 and {s.output_text for s in third.samples} == {"1"}
        time.sleep(0.3)  # step 4 needs version 2, not published yet
        assert engine.calls == [0, 0, 1]
        rollouts.publish(2, version(2))
        fourth, behaviour = rollouts.get(4)
        assert fourth.version == 2 and int(behaviour["v"]) == 2
        assert engine.loads == 3  # each version once
    finally:
        rollouts.close()


def test_a_failed_batch_is_raised_to_the_trainer():
    rollouts = pipeline(VersionEngine(fail_on_call=2), max_staleness=1)
    try:
        rollouts.get(1)
        with pytest.raises(RuntimeError, match="the engine broke"):
            rollouts.get(2)
    finally:
        rollouts.close()


def test_close_stops_a_thread_waiting_for_a_version():
    rollouts = pipeline(VersionEngine(), max_staleness=0)
    rollouts.get(1)  # step 2 waits for version 1, never published
    closing = threading.Thread(target=rollouts.close)
    closing.start()
    closing.join(timeout=5)
    assert not closing.is_alive()


def test_nothing_is_sampled_while_paused_and_the_version_is_reloaded_after():
    """The trainer pauses the thread to use a shared engine with its own weights (99);
    the pause waits for the batch in flight, and the next batch, of the same version 0,
    is sampled by version 0 again, not by what the trainer left on the engine."""
    engine, gate, entered = VersionEngine(), threading.Event(), threading.Event()
    generate = engine.generate

    def gated(prompts, n, params):
        if len(engine.calls) == 1:  # step 2: held until the pause is requested
            entered.set()
            gate.wait(timeout=10)
        return generate(prompts, n, params)

    engine.generate = gated  # type: ignore[method-assign]
    rollouts = pipeline(engine, max_staleness=2, last=3)  # steps 1-3 all by version 0
    inside, leave = threading.Event(), threading.Event()

    def trainer_validates() -> None:
        with rollouts.paused():
            engine.version = 99
            inside.set()
            leave.wait(timeout=10)

    try:
        rollouts.get(1)
        assert entered.wait(timeout=10)  # step 2 is in flight
        pausing = threading.Thread(target=trainer_validates)
        pausing.start()
        time.sleep(0.2)
        assert not inside.is_set()  # the pause waits for the batch in flight
        gate.set()
        assert inside.wait(timeout=10)
        time.sleep(0.3)
        assert len(engine.calls) == 2  # step 2 finished, nothing sampled while paused
        leave.set()
        pausing.join(timeout=10)
        assert {s.output_text for s in rollouts.get(2)[0].samples} == {"0"}
        assert {s.output_text for s in rollouts.get(3)[0].samples} == {"0"}
        assert engine.loads == 2  # version 0 loaded again after the pause
    finally:
        gate.set()
        rollouts.close()
