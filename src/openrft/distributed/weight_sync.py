"""The collective weight sync (`expert.ray.weight_sync: collective`): the trainer broadcasts
its trainable weights to the rollout copies over a torch.distributed group instead of
shipping them through Ray's object store.

The group has 1 + N ranks: rank 0 is the process holding the trained policy, ranks 1..N
the rollout copies. Rank 0 serves a TCPStore on a free port of its node; every rank
builds its process group explicitly from it (not `init_process_group`), so nothing global
is left in a process and several ranks can live in one (the tests' threads). Backend:
gloo for CPU tensors (verified in CI), NCCL when the trainer's weights are on CUDA and the
rollout copies have GPUs (written, not run: no GPU was at hand).

Before the group forms, every rollout rank checks that its trainable weights have the
trainer's names, shapes and dtypes (through the store): a mismatch is one clear error on
every rank, never a silent wrong copy or a hang. Each sync then broadcasts one contiguous
buffer per dtype (LoRA in float32: one buffer), in sorted-name order, and the receivers
copy the slices into their parameters in place. Every wait is bounded by `timeout_s`, so a
dead peer becomes an error, not a hang.

Ray-free: distributed/rollout.py drives it from the Ray actors.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from datetime import timedelta
from typing import Literal

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import Backend as C10dBackend  # ProcessGroupGloo's, NCCL's base

from openrft.errors import OpenRFTError

Backend = Literal["gloo", "nccl"]
SYNC_TIMEOUT_S = 60.0  # how long a rank waits for the others (joining, one broadcast)

# (name, shape, dtype) of each trainable tensor, in sorted-name order
Layout = list[tuple[str, tuple[int, ...], str]]


class WeightSyncError(OpenRFTError):
    """The collective weight sync cannot run (mismatched copies, no NCCL)."""


def choose_backend(driver_device: torch.device, gpus_per_rollout_worker: float) -> Backend:
    """NCCL when both ends hold the weights on GPUs; gloo otherwise (a CPU trainer, or
    CPU rollout copies: NCCL moves CUDA tensors only)."""
    if driver_device.type == "cuda" and gpus_per_rollout_worker > 0:
        return "nccl"
    return "gloo"


def layout_of(tensors: Mapping[str, torch.Tensor]) -> Layout:
    """What two copies must agree on for the flat buffers to line up."""
    return [(name, tuple(tensors[name].shape), str(tensors[name].dtype).removeprefix("torch."))
            for name in sorted(tensors)]


def first_difference(trainer: Layout, other: Layout, where: str) -> str | None:
    """The first weight (in name order) on which `other` differs from the trainer's, in
    words (`where` says where `other` is: "on rollout rank 2"); None when they agree."""
    ours = {name: (shape, dtype) for name, shape, dtype in trainer}
    theirs = {name: (shape, dtype) for name, shape, dtype in other}
    for name in sorted(ours.keys() | theirs.keys()):
        if name not in theirs:
            return f"{name} is on the trainer but not {where}"
        if name not in ours:
            return f"{name} is {where} but not on the trainer"
        if ours[name] != theirs[name]:
            return (f"{name} is {_describe(ours[name])} on the trainer but "
                    f"{_describe(theirs[name])} {where}")
    return None


def _describe(entry: tuple[tuple[int, ...], str]) -> str:
    shape, dtype = entry
    return f"{list(shape)} {dtype}"


def serve_store(host: str, world: int, timeout_s: float = SYNC_TIMEOUT_S) -> dist.TCPStore:
    """Rank 0's store on a free port of `host`, listening on that address only (`.port`
    tells the others)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, 0), family=family)
    return dist.TCPStore(host, listener.getsockname()[1], world, is_master=True,
                         wait_for_workers=False, timeout=timedelta(seconds=timeout_s),
                         master_listen_fd=listener.detach())  # the store closes it


def connect_store(host: str, port: int, world: int,
                  timeout_s: float = SYNC_TIMEOUT_S) -> dist.TCPStore:
    """A rollout rank's client of rank 0's store."""
    return dist.TCPStore(host, port, world, is_master=False,
                         timeout=timedelta(seconds=timeout_s))


def process_group(backend: Backend, store: dist.Store, rank: int, world: int,
                  timeout_s: float) -> C10dBackend:
    """A process group of `world` ranks meeting at `store`, not registered with
    torch.distributed's default world."""
    timeout = timedelta(seconds=timeout_s)
    if backend == "gloo":
        return dist.ProcessGroupGloo(store, rank, world, timeout)
    nccl = getattr(dist, "ProcessGroupNCCL", None)
    if nccl is None:
        raise WeightSyncError(
            "expert.ray.weight_sync: the collective sync of CUDA weights needs torch built "
            "with NCCL (torch.distributed.ProcessGroupNCCL is missing); use object_store")
    options = nccl.Options()
    options._timeout = timeout
    return nccl(store, rank, world, options)  # type: ignore[no-any-return]


class WeightSyncGroup:
    """One rank's end of the group. Rank 0 `send`s, the others `receive`; each buffer lives
    on `device` (CPU for gloo, the rank's GPU for NCCL)."""

    def __init__(self, store: dist.Store, rank: int, world: int, backend: Backend,
                 layout: Layout, device: torch.device | str,
                 timeout_s: float = SYNC_TIMEOUT_S) -> None:
        self.rank, self.layout, self.device = rank, layout, torch.device(device)
        _agree_on_layout(store, rank, world, layout)
        self.group: C10dBackend | None = process_group(backend, store, rank, world,
                                                             timeout_s)

    def send(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Rank 0: broadcast `weights` (the layout announced at join) to every rank."""
        if layout_of(weights) != self.layout:
            problem = first_difference(self.layout, layout_of(weights), "in the weights to send")
            raise WeightSyncError(f"the weights to sync are not the ones the group was "
                                  f"formed for: {problem}")
        for names in self._buffers():
            flat = torch.cat([weights[n].detach().reshape(-1).to(self.device) for n in names])
            self._broadcast(flat)

    def receive(self, params: Mapping[str, torch.Tensor]) -> None:
        """Rank > 0: take rank 0's broadcast into `params` (in place, on their device)."""
        with torch.no_grad():
            for names in self._buffers():
                first = params[names[0]]
                flat = torch.empty(sum(params[n].numel() for n in names), dtype=first.dtype,
                                   device=self.device)
                self._broadcast(flat)
                offset = 0
                for name in names:
                    param = params[name]
                    param.copy_(flat[offset:offset + param.numel()].view_as(param))
                    offset += param.numel()

    def close(self) -> None:
        """Drop the group (its sockets close with it)."""
        if self.group is not None:
            self.group.shutdown()
            self.group = None

    def _buffers(self) -> list[list[str]]:
        """The names of each broadcast buffer: one per dtype, in order of first use."""
        by_dtype: dict[str, list[str]] = {}
        for name, _, dtype in self.layout:
            by_dtype.setdefault(dtype, []).append(name)
        return list(by_dtype.values())

    def _broadcast(self, flat: torch.Tensor) -> None:
        if self.group is None:
            raise WeightSyncError("the weight-sync group is closed")
        options = dist.BroadcastOptions()
        options.rootRank = 0
        # the group's own broadcast: it is not in torch.distributed's world (torch's stubs
        # leave Backend.broadcast out)
        self.group.broadcast([flat], options).wait()  # type: ignore[attr-defined]


def _agree_on_layout(store: dist.Store, rank: int, world: int, layout: Layout) -> None:
    """Rank 0 publishes its layout; each other rank compares its own and answers; rank 0
    then tells all of them the first mismatch (or none). Every rank raises the same
    one-line error on a mismatch, before any of them waits on the process group."""
    if rank == 0:
        store.set("layout", json.dumps(layout))
        verdicts = [store.get(f"verdict/{r}").decode() for r in range(1, world)]
        problem = next((v for v in verdicts if v), "")
        store.set("verdict", problem)
    else:
        trainer = [(n, tuple(s), d) for n, s, d in json.loads(store.get("layout"))]
        mismatch = first_difference(trainer, layout, f"on rollout rank {rank}")
        store.set(f"verdict/{rank}", mismatch or "")
        problem = store.get("verdict").decode()
    if problem:
        raise WeightSyncError(f"the rollout copy's trainable weights do not match the "
                              f"trainer's: {problem}")
