"""`openrft serve` takes its workers with it.

Stopped with SIGTERM, SIGINT or SIGHUP, serve shuts down and reaps its workers before it
exits; killed with SIGKILL (no chance to clean up), its workers notice the dead parent and
exit on their own within seconds. Signals go to serve's pid alone, not its process group.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest
from service_flow import Spawn, start_serve

pytestmark = pytest.mark.slow


def serve_with_idle_workers(spawn: Spawn, tmp_path: Path,
                            workers: int) -> tuple[psutil.Popen, list[psutil.Process]]:
    log = tmp_path / "serve.log"
    server, _ = start_serve(spawn, tmp_path / "data", log, workers)
    deadline = time.monotonic() + 120
    while log.read_text().count(" polling ") < workers:  # signal handlers are installed
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)
    children = psutil.Process(server.pid).children()
    assert len(children) == workers and all("worker" in c.cmdline() for c in children)
    return server, children


def running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still alive (a zombie waiting for init to reap it counts as gone)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_serve_stops_and_reaps_its_workers(stop_signal: int, spawn: Spawn,
                                           tmp_path: Path) -> None:
    server, workers = serve_with_idle_workers(spawn, tmp_path, workers=2)
    server.send_signal(stop_signal)
    assert server.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()[-2000:]
    assert running(workers) == []  # reaped by serve before it exited, not left to init


def test_workers_exit_when_serve_is_killed(spawn: Spawn, tmp_path: Path) -> None:
    server, workers = serve_with_idle_workers(spawn, tmp_path, workers=1)
    server.kill()
    server.wait()
    killed = time.monotonic()
    while running(workers) and time.monotonic() - killed < 10:
        time.sleep(0.1)
    assert running(workers) == [], (tmp_path / "serve.log").read_text()[-2000:]
    assert "parent process" in (tmp_path / "serve.log").read_text()  # it stopped itself
