"""What a recorded rollout keeps of its forward pass, for the on-policy update to replay
(`fast.replay`), and the pool its buffers come from.

Lifetimes are enforced, not only documented: a tape is used once (replaying it, or
cutting it to some rows, uses it up), and a tape whose pooled buffers a later recorded
rollout took over is dead. Either misuse raises `TapeExpired` instead of reading stale
numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass
class LayerRecord:
    """The outputs of one block's four matmuls at every position a rollout ran."""

    qkv: torch.Tensor  # (R, L, (heads + 2 * kv_heads) * head_dim), bias included
    out: torch.Tensor  # (R, L, hidden) attention output projection
    gate_up: torch.Tensor  # (R, L, 2 * intermediate)
    down: torch.Tensor  # (R, L, hidden)


RECORDED = ("qkv", "out", "gate_up", "down")  # LayerRecord's fields, in block order


class TapeExpired(RuntimeError):
    """A forward tape was used twice, or after its buffers were reused."""


@dataclass
class ForwardTape:
    """What a recorded rollout computed, so that an on-policy update can take its forward
    pass from here instead of running the model again (`fast.replay`).

    Columns are the decode's own: P left-padded prompt positions, then one per token fed
    back. Logit row t is the distribution completion token t was sampled from.
    """

    input_ids: torch.Tensor  # (R, L) prompt then the completion tokens fed back
    positions: torch.Tensor  # (R, L) rotary positions (real tokens only are counted)
    key_valid: torch.Tensor  # (R, L) bool: False at left padding
    prompt_length: int  # P
    layers: list[LayerRecord] = field(default_factory=list)
    logits: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # (R, T, V)
    length: int = 0  # positions run so far
    steps: int = 0  # logit rows written so far
    pool: BufferPool | None = None  # where the buffers came from (None: owned)
    generation: int = 0  # the pool's generation when this tape was recorded
    spent: bool = False  # used up: replayed, or cut into another tape

    def use(self, what: str) -> None:
        """Check the tape is alive and mark it used up: `what` is the use, for the error."""
        self.check_alive(what)
        self.spent = True

    def check_alive(self, what: str) -> None:
        if self.spent:
            raise TapeExpired(f"cannot {what}: this forward tape was already used (a tape "
                              "is replayed once; its buffers become the gradient)")
        if self.pool is not None and self.pool.generation != self.generation:
            raise TapeExpired(f"cannot {what}: a later recorded rollout reused this forward "
                              "tape's buffers (consume a tape before the next rollout)")

    def truncated(self) -> ForwardTape:
        """The tape cut to what was run (the buffers were sized for max_tokens); this
        tape is used up, the cut one owns the buffers."""
        self.use("truncate the tape")
        cut = [LayerRecord(*(getattr(r, f)[:, : self.length] for f in RECORDED))
               for r in self.layers]
        return ForwardTape(self.input_ids[:, : self.length], self.positions[:, : self.length],
                           self.key_valid[:, : self.length], self.prompt_length, cut,
                           self.logits[:, : self.steps], self.length, self.steps,
                           self.pool, self.generation)

    def keep_rows(self, rows: torch.Tensor) -> ForwardTape:
        """The tape of `rows` only (ascending indices). The kept rows are moved to the
        front of this tape's own buffers, so nothing tape-sized is allocated; this tape is
        used up."""
        self.use("cut the tape to rows")
        arrays = [self.input_ids, self.positions, self.key_valid, self.logits,
                  *(getattr(r, f) for r in self.layers for f in RECORDED)]
        for target, source in enumerate(rows.tolist()):
            if target != source:
                for array in arrays:
                    array[target].copy_(array[source])
        n = len(rows)
        cut = [LayerRecord(*(getattr(r, f)[:n] for f in RECORDED)) for r in self.layers]
        return ForwardTape(self.input_ids[:n], self.positions[:n], self.key_valid[:n],
                           self.prompt_length, cut, self.logits[:n], self.length, self.steps,
                           self.pool, self.generation)


class BufferPool:
    """Uninitialised buffers by name, reused from one recorded rollout to the next.

    Why: a recorded rollout writes a few hundred MB of fresh memory (its tape), and on
    Linux each new 4 KiB page costs a page fault (measured: BENCHMARKS.md, "Fast-path
    micro-measurements"). (The KV cache is not pooled: it is dead during the update, and
    pooled it would add to the update's peak memory.) The contract: a buffer handed out is
    only valid until the same name is taken again, i.e. a tape lives until the next
    recorded rollout from this pool (`generation` counts them; tapes check it).
    """

    def __init__(self) -> None:
        self._flat: dict[str, torch.Tensor] = {}
        self.generation = 0  # recorded rollouts so far: older tapes from here are dead

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        size = math.prod(shape)
        flat = self._flat.get(name)
        if flat is None or flat.numel() < size or flat.dtype != like.dtype or (
                flat.device != like.device):
            flat = plain_empty(like, (size,))
            self._flat[name] = flat
        return flat[:size].view(shape)


def plain_empty(like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised buffer that autograd may use later: the decode loop runs under
    inference mode, whose own tensors can never be saved for backward."""
    with torch.inference_mode(False):
        return like.new_empty(shape)


def new_tape(input_ids: torch.Tensor, positions: torch.Tensor, key_valid: torch.Tensor,
             capacity: int, pool: BufferPool | None) -> ForwardTape:
    """An empty tape for one recorded rollout; a new generation of `pool`'s buffers."""
    rows, length = input_ids.shape
    if pool is not None:
        pool.generation += 1
    with torch.inference_mode(False):
        tape = ForwardTape(input_ids.new_zeros(rows, capacity),
                           positions.new_zeros(rows, capacity),
                           key_valid.new_ones(rows, capacity), length,
                           pool=pool, generation=pool.generation if pool else 0)
    tape.input_ids[:, :length] = input_ids
    tape.positions[:, :length] = positions
    tape.key_valid[:, :length] = key_valid
    return tape
