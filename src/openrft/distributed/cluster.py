"""Joining a Ray cluster, waiting on it, and saying clearly when it is gone.

Ray ends a driver whose head (GCS) stays unreachable for a minute with a fatal log line.
A run notices first: `wait` polls results with a short timeout and, between polls,
checks that the head still accepts connections; a lost head becomes a `ClusterError`
naming the address, so the trainer stops with one clear line (and the service fails the
job) while every finished checkpoint stays on disk for a resume.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import threading
from typing import Any

from openrft.errors import OpenRFTError

log = logging.getLogger(__name__)

HEAD_CHECK_S = 5.0  # seconds between head checks while waiting on the cluster


class ClusterError(OpenRFTError):
    """The Ray cluster cannot be reached, or cannot run what the run asked of it."""


def require_ray() -> Any:
    """The `ray` module, or a one-line error naming the extra to install."""
    if importlib.util.find_spec("ray") is None:
        raise ClusterError("expert.backend is 'ray' but ray is not installed "
                           "(pip install 'openrft[ray]')")
    import ray

    return ray


def connect(address: str | None) -> bool:
    """Join the cluster at `address` (None: RAY_ADDRESS, else a new local instance).
    True when this call started the connection, so the caller should end it."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS")
    try:
        ray.init(address=target, namespace="openrft", log_to_driver=False,
                 include_dashboard=False if target is None else None)
    except (ConnectionError, RuntimeError) as exc:
        raise ClusterError(f"cannot join the Ray cluster at {target}: {exc}") from None
    log.info("joined Ray cluster %s", head_address())
    return True


def disconnect() -> None:
    require_ray().shutdown()


def head_address() -> str:
    """host:port of the cluster's head (GCS) this process is connected to."""
    return str(require_ray().get_runtime_context().gcs_address)


def head_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the head still accepts TCP connections (without asking Ray, which would
    block on a dead head)."""
    host, _, port = head_address().rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def lost_head_error() -> ClusterError:
    return ClusterError(f"lost the Ray cluster: its head at {head_address()} is unreachable; "
                        "checkpoints are kept, resume the run once the cluster is back")


def wait(refs: Any) -> Any:
    """`ray.get(refs)`, raising `lost_head_error()` instead of hanging on a dead head."""
    ray = require_ray()
    while True:
        try:
            return ray.get(refs, timeout=HEAD_CHECK_S)
        except ray.exceptions.GetTimeoutError:
            if not head_reachable():
                raise lost_head_error() from None


def wait_each(refs: list[Any]) -> list[Any]:
    """`wait(refs)`, but the first task to fail raises at once, while the others may
    still be blocked waiting for it (a rank in a collective whose peer died)."""
    ray = require_ray()
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=HEAD_CHECK_S)
        if ready:
            ray.get(ready)  # raises the task's error
        elif not head_reachable():
            raise lost_head_error() from None
    return wait(refs)


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (Ray's carry tracebacks), else its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def reserve(ray: Any, bundle: dict[str, float], count: int, what: str, strategy: str,
            timeout_s: float) -> Any:
    """A placement group of `count` bundles, reserved as a whole within `timeout_s`, else
    withdrawn and a one-line ClusterError naming `what` could not be placed."""
    from ray.util.placement_group import placement_group, remove_placement_group

    group = placement_group([bundle] * count, strategy=strategy)
    try:
        ray.get(group.ready(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        remove_placement_group(group)
        raise ClusterError(
            f"the Ray cluster could not place {count} {what} of {bundle} within "
            f"{timeout_s:g} s; `ray status` shows what is free") from None
    return group


class Notices:
    """What a run's events should say about its actors (one replaced, ...), logged as it
    happens and collected until the training loop drains them; the async mode's thread
    adds to them too."""

    def __init__(self) -> None:
        self._messages: list[str] = []
        self._lock = threading.Lock()

    def add(self, message: str) -> None:
        log.warning("%s", message)
        with self._lock:
            self._messages.append(message)

    def drain(self) -> list[str]:
        with self._lock:
            messages, self._messages = self._messages, []
        return messages
