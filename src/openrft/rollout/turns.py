"""The model turns of a batch of episodes (rollout/episodes.py): each turn prefilling the
episodes so far again, or only what was added to each since its last turn.

`RePrefillTurns`: every turn is a fresh batched decode of each episode so far, through
the engine's `decode_rows`; what any engine that decodes token rows can do.

`CachedTurns` (the HF engine's `episode_turns`): each decode chunk keeps its forward, and
so its KV cache, from one turn to the next. A later turn drops the rows of the episodes
that ended (`keep_rows`) and prefills only each row's new tokens: the end of its last
model turn that the decode had not fed back yet, the tool turn and the next assistant
header. The new segments are left-padded to a common length, so the pads sit inside the
sequence (attention mask 0), as do the cache positions where a row that had finished
was fed pads; positions count real tokens only. A row's logits are therefore those of
its own tokens, whatever its batch (tests/rollout/test_turns.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from openrft.rollout.decode import BatchDecoder, ContinuableForward, DecodeSettings
from openrft.rollout.engine import CausalLM, GenerationParams

Turn = tuple[list[int], list[float], bool]  # one model turn: ids, log-probs, stopped


class RePrefillTurns:
    """Every turn decodes each episode so far from scratch (`engine.decode_rows`)."""

    def __init__(self, engine: Any, params: GenerationParams,
                 generator: torch.Generator | None) -> None:
        self.engine, self.params, self.generator = engine, params, generator

    def decode(self, keys: list[int], rows: list[list[int]]) -> list[Turn]:
        """The next model turn of each row (`keys` name the episodes; unused here)."""
        return self.engine.decode_rows(rows, self.params, self.generator)


@dataclass
class _Chunk:
    """Rows decoded together, and the cache they share."""

    forward: ContinuableForward
    keys: list[int]  # the episode of each cache row, in cache order
    fed: list[list[int]]  # each row's real tokens in the cache
    mask: torch.Tensor  # (R, forward.length): 1 where a cache position holds a real token


class CachedTurns:
    """Model turns that continue each episode's KV cache (one session per batch of
    episodes: the first `decode` prefills, every later one extends)."""

    def __init__(self, model: CausalLM, new_forward: Callable[[], ContinuableForward],
                 settings: DecodeSettings, device: torch.device, max_rows: int | None
                 ) -> None:
        self.model, self.new_forward, self.settings = model, new_forward, settings
        self.device, self.max_rows = device, max_rows
        self.chunks: list[_Chunk] | None = None  # None: no turn yet

    def decode(self, keys: list[int], rows: list[list[int]]) -> list[Turn]:
        """The next model turn of each row; `rows` are the episodes so far, `keys` name
        them (the same episode, the same key, every turn). Episodes not named again are
        dropped from the cache; a key the session has not seen is refused."""
        if self.chunks is None:
            size = self.max_rows or max(len(rows), 1)
            plan: list[tuple[_Chunk | None, list[int]]] = [
                (None, list(range(start, min(start + size, len(rows)))))
                for start in range(0, len(rows), size)]
        else:
            plan = self._continued_plan(keys)
        results: list[Turn | None] = [None] * len(rows)
        chunks = []
        for chunk, where in plan:
            turns, kept = self._turn(chunk, [keys[i] for i in where], [rows[i] for i in where])
            chunks.append(kept)
            for i, turn in zip(where, turns, strict=True):
                results[i] = turn
        self.chunks = chunks
        return [turn for turn in results if turn is not None]

    def _continued_plan(self, keys: list[int]) -> list[tuple[_Chunk | None, list[int]]]:
        """Which chunk holds each key's cache: (chunk, indices of `keys`) for every chunk
        that still has a row (the others, and their caches, are let go)."""
        assert self.chunks is not None
        owner = {key: c for c, chunk in enumerate(self.chunks) for key in chunk.keys}
        unknown = [key for key in keys if key not in owner]
        if unknown:
            raise ValueError(f"episodes {unknown} have no cache in this session: a session "
                             "continues the episodes of its first turn only")
        where: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            where.setdefault(owner[key], []).append(i)
        return [(self.chunks[c], indices) for c, indices in sorted(where.items())]

    def _turn(self, chunk: _Chunk | None, keys: list[int], rows: list[list[int]]
              ) -> tuple[list[Turn], _Chunk]:
        """Decode one chunk's rows: a fresh prefill (no chunk yet) or a continued cache."""
        fed: list[list[int]]
        if chunk is None:
            forward, past, fed = self.new_forward(), None, [[] for _ in rows]
        else:
            forward, fed = chunk.forward, [chunk.fed[chunk.keys.index(k)] for k in keys]
            kept = torch.tensor([chunk.keys.index(k) for k in keys], device=self.device)
            forward.keep_rows(kept)
            past = chunk.mask[kept]  # (R, L)
        ids, mask = _left_padded([_new_tokens(row, done) for row, done in zip(rows, fed,
                                                                             strict=True)],
                                 self.settings.pad_id, self.device)  # (R, N) each
        decoder = BatchDecoder(
            self.model, ids, mask, self.settings,
            forward if past is None else _Continued(forward, past),
            past_lengths=None if past is None else past.sum(dim=-1))
        for _ in decoder:
            pass
        out = decoder.output
        before = ids.shape[1] + (0 if past is None else past.shape[1])
        steps = torch.arange(forward.length - before, device=self.device)  # tokens fed back
        fed_back = (steps[None, :] < out.lengths[:, None]).to(mask.dtype)  # (R, steps)
        parts = [mask, fed_back] if past is None else [past, mask, fed_back]
        tokens, logprobs = out.tokens.tolist(), out.logprobs.tolist()
        lengths, stopped = out.lengths.tolist(), out.stopped.tolist()
        turns = [(tokens[r][: lengths[r]], logprobs[r][: lengths[r]], bool(stopped[r]))
                 for r in range(len(rows))]
        new_fed = [row + tokens[r][: min(lengths[r], len(steps))] for r, row in enumerate(rows)]
        return turns, _Chunk(forward, keys, new_fed, torch.cat(parts, dim=1))


class _Continued:
    """The `DecodeForward` a continued chunk decodes with: its prefill extends the cache
    (`past`: the cache positions' attention mask) instead of starting one."""

    def __init__(self, forward: ContinuableForward, past: torch.Tensor) -> None:
        self.forward, self.past = forward, past

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor, extra: int) -> torch.Tensor:
        full = torch.cat([self.past, attention_mask], dim=1)  # (R, L + N)
        return self.forward.extend(input_ids, full, positions, extra)

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.forward.step(tokens, positions)


def _new_tokens(row: list[int], fed: list[int]) -> list[int]:
    """What `row` adds to the tokens its cache holds; the cache must hold a prefix."""
    if row[: len(fed)] != fed or len(row) == len(fed):
        raise ValueError("an episode must extend the tokens of its last turn to continue "
                         "its cache")
    return row[len(fed):]


def _left_padded(rows: list[list[int]], pad_id: int, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, N) ids and attention mask of `rows`, each padded at its start."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[r, width - len(row):] = 1
    return ids.to(device), mask.to(device)
