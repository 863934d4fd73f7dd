"""The async mode (`expert.max_staleness: k > 0`): later steps' rollouts are sampled and
graded on a background thread while the trainer updates.

The schedule is fixed, so a run is reproducible: step s's batch is sampled by policy
version v(s) = max(first, s - 1 - k), where version v means the weights after v optimizer
steps and `first` is the version the run (or its resume) started from. With k = 1 the
batch of step s + 1 is sampled by the weights step s starts from, while step s updates
them. A batch never lags the policy it updates by more than k versions (`staleness`
in metrics.jsonl). The update takes its clipped ratio against the sampling version's
log-probs (rl/update.py, `frozen_logprobs`), so the off-policy samples are corrected.

The thread samples on its own copy of the policy and loads version v(s) before batch s:
on the Ray backend the rollout actors (which hold copies anyway); on the local backend a
second copy of the policy in this process with its own HF engine. The trainer publishes
each new version, keeps the snapshots a pending batch was sampled by, and pauses the
thread while it validates on the shared engine. See docs/scaling.md, "When async helps".
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from openrft.errors import InvalidInput
from openrft.rl.step import PlainPath, Rollout, StepContext, collect_rollout
from openrft.rl.weights import Weights, load_weights, trainable_weights
from openrft.rollout.engine import Messages

# step -> (dataset rows, prompts) of that step's batch
Batches = Callable[[int], tuple[list[dict[str, Any]], list[Messages]]]


@dataclass
class Sampler:
    """What the background thread samples with, and how it takes on a policy version."""

    ctx: StepContext
    load: Callable[[Weights], None]
    close: Callable[[], None]


def open_sampler(ctx: StepContext, tokenizer: Any,
                 episodes: Callable[[Any], Any] | None) -> Sampler:
    """The rollout actors (Ray), or a second copy of the policy with its own HF engine
    (local). `episodes(engine)` makes the episode runner of a run with tools."""
    path = PlainPath()  # samples only: the training path's recording is the trainer's
    if ctx.cfg.backend == "ray":
        engine = ctx.engine
        sampler_ctx = replace(ctx, policy=replace(ctx.policy, path=path),
                              episodes=episodes(engine) if episodes else None)
        return Sampler(sampler_ctx, engine.load_weights,  # type: ignore[attr-defined]
                       lambda: _close(sampler_ctx))
    from openrft.rollout.factory import make_engine, resolve_engine_kind

    if resolve_engine_kind(ctx.cfg.engine) != "hf":
        raise InvalidInput("expert.max_staleness", "the async mode of the local backend "
                           "samples on a second copy of the policy with the HF engine; "
                           "use engine: hf, or backend: ray for vLLM")
    model = copy.deepcopy(ctx.policy.model).eval()
    engine = make_engine(model, tokenizer, "hf", decode_forward=ctx.policy.path.decode_forward)
    sampler_ctx = replace(ctx, engine=engine, policy=replace(ctx.policy, model=model, path=path),
                          episodes=episodes(engine) if episodes else None)

    def load(weights: Weights) -> None:
        load_weights(model, weights)
        engine.sync_weights(model)

    return Sampler(sampler_ctx, load, lambda: _close(sampler_ctx))


def _close(ctx: StepContext) -> None:
    if ctx.episodes is not None:
        ctx.episodes.close()


class AsyncRollouts:
    """Steps first+1 .. last sampled ahead on a thread, batch s by version v(s)."""

    def __init__(self, sampler: Sampler, batches: Batches, first: int, last: int,
                 max_staleness: int, weights: Weights) -> None:
        self.sampler, self.batches = sampler, batches
        self.first, self.last, self.max_staleness = first, last, max_staleness
        self._versions: dict[int, Weights] = {first: weights}  # published, still needed
        self._ready: dict[int, Rollout | BaseException] = {}
        self._lock = threading.Condition()
        self._paused = self._busy = self._stopped = False
        self._loaded: int | None = None  # the version the sampler holds; None: unknown
        self._thread = threading.Thread(target=self._produce, name="async-rollouts",
                                        daemon=True)
        self._thread.start()

    def version_of(self, step: int) -> int:
        """The policy version that samples step `step`'s batch."""
        return max(self.first, step - 1 - self.max_staleness)

    def get(self, step: int) -> tuple[Rollout, Weights | None]:
        """Step `step`'s rollout (waiting for it), and the weights that sampled it when
        they are older than the policy the step updates (None: on-policy)."""
        with self._lock:
            self._lock.wait_for(lambda: step in self._ready)
            result = self._ready.pop(step)
            if isinstance(result, BaseException):
                raise result
            stale = result.version < step - 1
            return result, self._versions[result.version] if stale else None

    def publish(self, version: int, weights: Weights) -> None:
        """The trainer's weights after `version` optimizer steps; versions no later
        batch was sampled by are dropped."""
        with self._lock:
            self._versions[version] = weights
            for old in [v for v in self._versions if v < self.version_of(version + 1)]:
                del self._versions[old]
            self._lock.notify_all()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No sampling inside the block (the trainer uses the engine, e.g. to validate);
        afterwards the thread loads its version again before it samples."""
        with self._lock:
            self._paused = True
            self._lock.wait_for(lambda: not self._busy)
        try:
            yield
        finally:
            with self._lock:
                self._paused, self._loaded = False, None
                self._lock.notify_all()

    def close(self) -> None:
        """Stop after the batch in flight (if any); release the sampler. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._lock.notify_all()
        self._thread.join()
        self.sampler.close()

    def _claim(self, version: int) -> Weights | None:
        """Wait until `version` is published and sampling is not paused, then mark the
        thread busy; its weights, or None once the pipeline is closed."""
        with self._lock:
            self._lock.wait_for(lambda: self._stopped or (
                not self._paused and version in self._versions))
            if self._stopped:
                return None
            self._busy = True
            return self._versions[version]

    def _produce(self) -> None:
        for step in range(self.first + 1, self.last + 1):
            version = self.version_of(step)
            weights = self._claim(version)
            if weights is None:
                return
            try:
                if self._loaded != version:
                    self.sampler.load(weights)
                    self._loaded = version
                items, prompts = self.batches(step)
                result: Rollout | BaseException = collect_rollout(
                    self.sampler.ctx, step, items, prompts, version)
            except BaseException as exc:  # handed to the trainer, which raises it
                result = exc
            with self._lock:
                self._ready[step], self._busy = result, False
                self._lock.notify_all()
            if isinstance(result, BaseException):
                return


def open_async_rollouts(ctx: StepContext, tokenizer: Any, batches: Batches, first: int,
                        episodes: Callable[[Any], Any] | None) -> AsyncRollouts:
    """The async mode's rollouts for steps first+1 .. total_steps."""
    sampler = open_sampler(ctx, tokenizer, episodes)
    return AsyncRollouts(sampler, batches, first, ctx.cfg.total_steps, ctx.cfg.max_staleness,
                         trainable_weights(ctx.policy.model))
