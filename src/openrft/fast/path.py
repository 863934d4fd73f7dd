"""`FastPath`: the `TrainingPath` (rl/step.py) with every speed trick, and the decode
forward the HF engine uses by default (`decode_forward`).

The tricks and where they apply (each falls back to the plain piece where it does not):
- decode: the hand-written Llama-family forward (`llama_decode`: fused, prepacked
  weights, in-place KV buffers, a group's prompt cached once) for the models it
  reproduces exactly; any other model its own forward with a preallocated cache
  (`transformers_cache`), where `probes` confirm transformers' cache layer; both keep
  their cache across an episode's turns (`keep_rows`, `extend`: rollout/turns.py);
- sampling: the training rollout records its forward (`forward_tape`) when the update
  can replay it (one iteration, one micro-batch, fp32, no dropout: `replay_supported`);
- update: the recorded forward replayed under autograd (`replay`), else the model's
  forward with the fused log-prob backward (`fused_logprobs`), zero-advantage rows left
  out (`update`).

Not with data-parallel trainer actors (`expert.ray.trainers` > 1): their path
(distributed/trainers.py `DataParallelPath`) replaces this one and the ranks run the plain
update, since the replay needs the rollout recorded in the process that updates and the
other tricks are not verified sharded.
"""

from __future__ import annotations

import torch

from openrft.fast.forward_tape import BufferPool, ForwardTape
from openrft.fast.llama_decode import LlamaDecodeForward, fast_decode_for
from openrft.fast.probes import dynamic_layer_in_place
from openrft.fast.replay import replay_supported
from openrft.fast.update import fast_update
from openrft.rl.config import ResolvedConfig
from openrft.rl.logprobs import TokenBatch
from openrft.rl.step import Policy
from openrft.rl.update import UpdateStats
from openrft.rl.weights import Weights
from openrft.rollout.decode import DecodeForward, TransformersForward
from openrft.rollout.engine import CausalLM, GenerationParams, Messages, RolloutEngine, Sample


def decode_forward(model: CausalLM) -> DecodeForward:
    """The fastest decode forward that reproduces `model`: the hand-written Llama-family
    one, else the model's own with a preallocated KV cache, else the plain one."""
    fast = fast_decode_for(model)
    if fast is not None:
        return fast
    if dynamic_layer_in_place():
        from openrft.fast.transformers_cache import PreallocatingForward

        return PreallocatingForward(model)
    return TransformersForward(model)


class FastPath:
    """`expert.fast_path: auto`. One per run: it holds the buffer pools its recorded
    rollouts reuse and the tapes of the latest one until the update consumes them."""

    def __init__(self, record: bool) -> None:
        self.record = record  # whether training rollouts record their forward for replay
        self._pools: list[BufferPool] = []  # one per decode chunk of a recorded rollout
        self._recording: list[LlamaDecodeForward | None] | None = None  # None: not now
        self._tapes: list[ForwardTape] | None = None  # the latest rollout's, until updated

    @classmethod
    def for_run(cls, cfg: ResolvedConfig, model: CausalLM, autocast: torch.dtype | None
                ) -> FastPath:
        """Record rollouts only where the update can replay them: on-policy, so never in
        the async mode (its batches are sampled by older weights, on another copy)."""
        return cls(cfg.reuse_rollout_forward and cfg.max_staleness == 0 and replay_supported(
            model, cfg.num_iterations, cfg.grad_accum_steps, autocast))

    def decode_forward(self, model: CausalLM) -> DecodeForward:
        """`decode_forward`; while `sample` records, a recording Llama forward per chunk,
        each with its own buffer pool (a chunk's tape must survive the next chunk)."""
        if self._recording is None:
            return decode_forward(model)
        index = len(self._recording)
        self._pools += [BufferPool() for _ in range(index + 1 - len(self._pools))]
        recording = fast_decode_for(model, record=True, pool=self._pools[index])
        self._recording.append(recording)
        return recording or decode_forward(model)

    def sample(self, engine: RolloutEngine, prompts: list[Messages], n: int,
               params: GenerationParams) -> list[Sample]:
        """The engine's samples; their forward recorded when every decode chunk ran the
        Llama forward (an engine that does not decode through this path records none)."""
        self._tapes = None
        if not self.record:
            return engine.generate(prompts, n, params)
        self._recording = []
        try:
            samples = engine.generate(prompts, n, params)
        finally:
            forwards, self._recording = self._recording, None
        tapes = [f.tape for f in forwards if f is not None and f.tape is not None]
        if forwards and len(tapes) == len(forwards):
            self._tapes = [tape.truncated() for tape in tapes]
        return samples

    def update(self, policy: Policy, cfg: ResolvedConfig, batch: TokenBatch,
               advantages: torch.Tensor, behaviour: Weights | None = None) -> UpdateStats:
        """The fast update; the latest rollout's tapes are handed over (and used up)."""
        tapes, self._tapes = self._tapes, None
        return fast_update(policy, cfg, batch, advantages, tapes, behaviour)
