"""How a batch is split between Ray workers, and how weights travel to them (no cluster)."""

from __future__ import annotations

import pytest
import torch

from openrft.distributed.shards import shard_bounds, shard_seed


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [
        (10, 3, [(0, 4), (4, 7), (7, 10)]),  # sizes 4, 3, 3
        (4, 2, [(0, 2), (2, 4)]),
        (2, 4, [(0, 1), (1, 2)]),  # never an empty shard
        (5, 1, [(0, 5)]),
        (0, 3, []),
    ],
)
def test_shard_bounds(total, parts, expected):
    assert shard_bounds(total, parts) == expected


def test_one_shard_keeps_the_batch_seed_and_several_get_their_own():
    assert shard_seed(7, 0, 1) == 7  # one worker samples exactly what the local engine does
    assert shard_seed(None, 1, 3) is None
    seeds = [shard_seed(7, i, 3) for i in range(3)]
    assert len(set(seeds)) == 3 and 7 not in seeds
    # a shard's seed depends on the batch seed and the shard, not on the worker running it
    assert seeds == [shard_seed(7, i, 3) for i in range(3)]
    assert shard_seed(8, 0, 3) != seeds[0]


def test_trainable_weights_round_trip_into_another_copy(tiny_model_dir):
    from openrft.models.load import LoraSettings, load_model
    from openrft.rl.weights import load_weights, trainable_weights

    lora = LoraSettings(rank=2, alpha=4, dropout=0.0)
    trained = load_model(str(tiny_model_dir), dtype="float32", trainable=True, lora=lora).model
    copy = load_model(str(tiny_model_dir), dtype="float32", trainable=True, lora=lora).model
    with torch.no_grad():
        for p in trained.parameters():
            if p.requires_grad:
                p.add_(0.5)
    weights = trainable_weights(trained)
    assert weights and all("lora_" in name for name in weights)  # only the adapters travel
    load_weights(copy, weights)
    for (name, a), b in zip(trained.state_dict().items(), copy.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="do not match"):
        load_weights(copy, {"no.such.weight": torch.zeros(1)})
