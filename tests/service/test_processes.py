"""The pieces that keep serve's workers from outliving it, and the suite's leak check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from openrft.service.processes import stop_when_parent_dies, stop_workers
from process_groups import MARKER, leaked_processes

IGNORES_SIGTERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('ready', flush=True); time.sleep(120)")


def test_a_worker_stops_once_its_parent_is_gone() -> None:
    stop = threading.Event()
    watcher = stop_when_parent_dies(os.getppid(), stop)  # our parent is alive
    assert not stop.wait(1.2)
    stop.set()
    watcher.join(timeout=2)
    # re-parented: getppid() no longer answers the pid we were started by
    gone = threading.Event()
    stop_when_parent_dies(os.getppid() + 1_000_000, gone)
    assert gone.wait(2)


def test_stop_workers_kills_a_worker_that_ignores_sigterm_after_the_grace(spawn) -> None:
    stubborn = spawn([sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE)
    polite = spawn([sys.executable, "-c", "import time; time.sleep(120)"])
    assert stubborn.stdout.readline() == b"ready\n"  # its SIGTERM handler is set
    started = time.monotonic()
    stop_workers([stubborn, polite], grace_s=1.0)
    assert time.monotonic() - started < 5
    assert polite.returncode == -signal.SIGTERM and stubborn.returncode == -signal.SIGKILL


def test_the_leak_check_finds_an_orphan_of_the_suite(spawn) -> None:
    session = os.environ[MARKER]
    shell = spawn(["sh", "-c", "sleep 60 & echo $!"], stdout=subprocess.PIPE, text=True)
    orphan = int(shell.stdout.readline())  # the shell exits; its sleep goes to init
    shell.wait()
    try:
        deadline = time.monotonic() + 5
        while orphan not in [p.pid for p in leaked_processes(session, os.getpid())]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = spawn(["sleep", "60"])  # a live child of the suite is not a leak (yet)
        assert child.pid not in [p.pid for p in leaked_processes(session, os.getpid())]
    finally:
        os.kill(orphan, signal.SIGKILL)
