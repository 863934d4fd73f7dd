"""The collective weight sync (distributed/weight_sync.py) without Ray: a trainer rank and
rollout ranks as threads of this process, meeting over a real TCPStore on 127.0.0.1 with
gloo, as the Ray actors do across processes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.distributed as dist

from openrft.distributed.weight_sync import (
    WeightSyncError,
    WeightSyncGroup,
    choose_backend,
    connect_store,
    layout_of,
    process_group,
    serve_store,
)

TIMEOUT_S = 5.0  # every wait in these tests is bounded by this


def trainer_weights() -> dict[str, torch.Tensor]:
    """Odd shapes, two dtypes (two broadcast buffers), names not in sorted order."""
    torch.manual_seed(0)
    return {
        "z.lora_B": torch.randn(5, 3),
        "a.lora_A": torch.randn(3, 7).to(torch.bfloat16),
        "m.scale": torch.randn(1),
        "b.bias": torch.randn(2, 1, 3).to(torch.bfloat16),
        "c.weight": torch.randn(11),
    }


def rollout_params(seed: int, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A rollout copy's own parameters: the trainer's layout, other values."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.nn.Parameter(torch.randn(w.shape, generator=generator).to(w.dtype))
            for name, w in weights.items()}


def run_ranks(work: list[Callable[[], Any]], limit_s: float = 30.0) -> list[Any]:
    """Each callable in its own thread; what each returned or raised. Fails if a thread is
    still running after `limit_s` (a hang)."""
    outcomes: list[Any] = [None] * len(work)

    def run(index: int) -> None:
        try:
            outcomes[index] = work[index]()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(work))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + limit_s
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a rank hung"
    return outcomes


def sync_once(weights: dict[str, torch.Tensor], receivers: list[dict[str, torch.Tensor]]
              ) -> tuple[list[Any], int]:
    """Rank 0 sends `weights` to one rank per receiver; (outcomes by rank, store port)."""
    world = 1 + len(receivers)
    store = serve_store("127.0.0.1", world, TIMEOUT_S)

    def trainer() -> WeightSyncGroup:
        group = WeightSyncGroup(store, 0, world, "gloo", layout_of(weights), "cpu", TIMEOUT_S)
        group.send(weights)
        return group

    def rollout(rank: int) -> Callable[[], WeightSyncGroup]:
        def receive() -> WeightSyncGroup:
            client = connect_store("127.0.0.1", store.port, world, TIMEOUT_S)
            params = receivers[rank - 1]
            group = WeightSyncGroup(client, rank, world, "gloo", layout_of(params), "cpu",
                                    TIMEOUT_S)
            group.receive(params)
            return group
        return receive

    outcomes = run_ranks([trainer, *(rollout(r) for r in range(1, world))])
    return outcomes, store.port


def test_the_trainers_weights_reach_every_rollout_copy_bit_for_bit():
    weights = trainer_weights()
    receivers = [rollout_params(1, weights), rollout_params(2, weights)]
    storage = [{n: p.data_ptr() for n, p in r.items()} for r in receivers]
    assert not any(torch.equal(r[n], w) for r in receivers for n, w in weights.items())
    outcomes, _ = sync_once(weights, receivers)
    assert all(isinstance(o, WeightSyncGroup) for o in outcomes), outcomes
    for params, pointers in zip(receivers, storage, strict=True):
        for name, expected in weights.items():
            assert params[name].dtype == expected.dtype
            assert torch.equal(params[name].detach(), expected), name
            assert params[name].data_ptr() == pointers[name]  # in place: same storage
            assert params[name].requires_grad  # still the model's parameter
    for group in outcomes:
        group.close()


def test_a_second_sync_over_the_same_group_delivers_the_new_weights():
    """The group is formed once and used for every update."""
    weights = trainer_weights()
    params = rollout_params(1, weights)
    store = serve_store("127.0.0.1", 2, TIMEOUT_S)
    newer = {name: w * 2 + 1 for name, w in weights.items()}

    def trainer() -> None:
        group = WeightSyncGroup(store, 0, 2, "gloo", layout_of(weights), "cpu", TIMEOUT_S)
        group.send(weights)
        group.send(newer)
        group.close()

    def rollout() -> list[dict[str, torch.Tensor]]:
        client = connect_store("127.0.0.1", store.port, 2, TIMEOUT_S)
        group = WeightSyncGroup(client, 1, 2, "gloo", layout_of(params), "cpu", TIMEOUT_S)
        seen = []
        for _ in range(2):
            group.receive(params)
            seen.append({n: p.detach().clone() for n, p in params.items()})
        group.close()
        return seen

    outcomes = run_ranks([trainer, rollout])
    first, second = outcomes[1]
    for name, w in weights.items():
        assert torch.equal(first[name], w) and torch.equal(second[name], w * 2 + 1), name


@pytest.mark.parametrize(("change", "problem"), [
    (lambda p: p.update({"c.weight": torch.nn.Parameter(torch.zeros(12))}),
     "c.weight is [11] float32 on the trainer but [12] float32 on rollout rank 2"),
    (lambda p: p.update({"m.scale": torch.nn.Parameter(torch.zeros(1, dtype=torch.float16))}),
     "m.scale is [1] float32 on the trainer but [1] float16 on rollout rank 2"),
    (lambda p: p.pop("b.bias"), "b.bias is on the trainer but not on rollout rank 2"),
    (lambda p: p.update({"aa.extra": torch.nn.Parameter(torch.zeros(1))}),
     "aa.extra is on rollout rank 2 but not on the trainer"),
])
def test_a_rollout_copy_with_other_weights_fails_on_every_rank_without_a_hang(change, problem):
    """Rank 2's copy differs (another shape, dtype, a missing or an extra weight): every
    rank raises the same one-line error naming the first differing weight, at once (not
    after the timeout), and no copy is touched."""
    weights = trainer_weights()
    receivers = [rollout_params(1, weights), rollout_params(2, weights)]
    change(receivers[1])
    before = [{n: p.detach().clone() for n, p in r.items()} for r in receivers]
    started = time.monotonic()
    outcomes, _ = sync_once(weights, receivers)
    assert time.monotonic() - started < TIMEOUT_S
    expected = f"the rollout copy's trainable weights do not match the trainer's: {problem}"
    for outcome in outcomes:
        assert isinstance(outcome, WeightSyncError), outcome
        assert str(outcome) == expected
    for params, old in zip(receivers, before, strict=True):
        assert all(torch.equal(params[n].detach(), old[n]) for n in params)


def test_a_rollout_rank_that_never_joins_is_an_error_within_the_timeout():
    """A dead peer: rank 0 waits for its answer at most the timeout, then raises."""
    store = serve_store("127.0.0.1", 2, 1.0)
    weights = trainer_weights()
    started = time.monotonic()
    [outcome] = run_ranks([lambda: WeightSyncGroup(store, 0, 2, "gloo", layout_of(weights),
                                                   "cpu", 1.0)], limit_s=10)
    assert isinstance(outcome, dist.DistError), outcome
    assert time.monotonic() - started < 5


def test_closing_the_group_and_store_frees_the_port():
    weights = trainer_weights()
    outcomes, port = sync_once(weights, [rollout_params(1, weights)])
    for group in outcomes:
        group.close()
        with pytest.raises(WeightSyncError, match="closed"):
            group.send(weights) if group.rank == 0 else group.receive(weights)
    del outcomes
    with socket.socket() as probe:  # the store was dropped with sync_once's frame
        assert probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize(("device", "gpus", "backend"), [
    ("cpu", 0, "gloo"), ("cpu", 1, "gloo"),
    ("cuda", 1, "nccl"), ("cuda", 0.5, "nccl"),
    ("cuda", 0, "gloo"),  # the rollout copies are on CPU: NCCL cannot reach them
])
def test_the_backend_follows_where_the_weights_live(device, gpus, backend):
    assert choose_backend(torch.device(device), gpus) == backend


@pytest.mark.skipif(hasattr(dist, "ProcessGroupNCCL"), reason="this torch has NCCL")
def test_nccl_without_nccl_in_torch_is_a_clear_error():
    with pytest.raises(WeightSyncError) as error:
        process_group("nccl", dist.HashStore(), 0, 1, TIMEOUT_S)
    assert str(error.value) == (
        "expert.ray.weight_sync: the collective sync of CUDA weights needs torch built with "
        "NCCL (torch.distributed.ProcessGroupNCCL is missing); use object_store")


def test_an_unknown_weight_sync_is_a_one_line_config_error():
    from openrft.errors import InvalidInput
    from openrft.rl.config import config_from_dict

    grader = {"type": "string_check", "name": "g", "input": "a", "reference": "b",
              "operation": "eq"}
    config = {"model": "m", "training_file": "t.jsonl", "grader": grader,
              "expert": {"ray": {"weight_sync": "nccl"}}}
    with pytest.raises(InvalidInput) as error:
        config_from_dict(config)
    assert str(error.value) == ("config: expert.ray.weight_sync: Input should be "
                                "'object_store' or 'collective'")


def test_sending_other_weights_than_the_group_was_formed_for_is_refused():
    """The receivers would cut the buffer by the joined layout: rank 0 refuses first."""
    weights = trainer_weights()
    group = WeightSyncGroup(dist.HashStore(), 0, 1, "gloo", layout_of(weights), "cpu",
                            TIMEOUT_S)
    other = {**weights, "c.weight": torch.zeros(10)}
    with pytest.raises(WeightSyncError) as error:
        group.send(other)
    assert str(error.value) == (
        "the weights to sync are not the ones the group was formed for: c.weight is [11] "
        "float32 on the trainer but [10] float32 in the weights to send")
    group.close()
