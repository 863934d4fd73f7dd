"""The worker processes of `openrft serve`: they live exactly as long as the server.

`serve` starts its workers with its own pid and, when it stops on SIGTERM, SIGINT or
SIGHUP, shuts uvicorn down, then terminates and reaps every worker (SIGKILL after a grace
period). A server killed with SIGKILL cannot do that, so each worker also watches its
parent: once the parent is gone it stops as on SIGTERM, which checkpoints a running job
and puts it back in the queue (see `Worker.run_forever`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PARENT_CHECK_INTERVAL_S = 0.5


def start_workers(command: list[str], count: int) -> list[subprocess.Popen[bytes]]:
    """`count` worker processes running `command`, each told to stop when we die."""
    watched = [*command, "--parent-pid", str(os.getpid())]
    return [subprocess.Popen(watched) for _ in range(count)]


def run_until_stopped(server: Any) -> None:
    """Run a `uvicorn.Server` until SIGTERM, SIGINT or SIGHUP, each a graceful shutdown.

    uvicorn handles SIGTERM and SIGINT itself but then re-raises the signal under the
    handler that was there before it; with the default handler that kills this process
    before its workers are stopped. Installing `handle_exit` for all three first makes
    that re-raise harmless and gives SIGHUP the same graceful path.
    """
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, server.handle_exit)
    server.run()


def stop_workers(workers: list[subprocess.Popen[bytes]], grace_s: float = 30.0) -> None:
    """SIGTERM every worker (each finishes its step and checkpoints), wait up to `grace_s`
    in all, then SIGKILL the ones still running; every worker is reaped on return."""
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    deadline = time.monotonic() + grace_s
    for worker in workers:
        try:
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker %d did not stop within %.0f s; killing it", worker.pid, grace_s)
            worker.kill()
            worker.wait()


def stop_when_parent_dies(parent_pid: int, stop: threading.Event) -> threading.Thread:
    """Set `stop` once this process's parent is no longer `parent_pid` (it died and we
    were re-parented), checking every PARENT_CHECK_INTERVAL_S; also when it already is."""

    def watch() -> None:
        while not stop.is_set():
            if os.getppid() != parent_pid:
                log.warning("parent process %d is gone: stopping", parent_pid)
                stop.set()
                return
            stop.wait(PARENT_CHECK_INTERVAL_S)

    watcher = threading.Thread(target=watch, name="parent-watch", daemon=True)
    watcher.start()
    return watcher
