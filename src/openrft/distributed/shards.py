"""How a batch is cut into pieces for several workers, and each piece's sampling seed."""

from __future__ import annotations

import numpy as np


def shard_bounds(total: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges covering range(total) in at most `parts` pieces
    whose sizes differ by at most one; no empty piece."""
    parts = max(1, min(parts, total))
    size, extra = divmod(total, parts)
    bounds, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        if end > start:
            bounds.append((start, end))
        start = end
    return bounds


def shard_seed(seed: int | None, shard: int, shards: int) -> int | None:
    """The sampling seed of one shard: the batch's own seed when there is one shard (so a
    single rollout worker samples exactly what the local engine samples), else a seed
    derived from (seed, shard) that does not depend on which worker runs the shard."""
    if seed is None or shards == 1:
        return seed
    return int(np.random.SeedSequence([seed, shard]).generate_state(1)[0])
