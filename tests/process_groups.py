"""Processes the test suite starts: each in its own process group, which is killed whole.

`MARKER` is set in the suite's environment at start-up, so every process the suite starts
(and every process those start) carries it in /proc/PID/environ, even after it has been
re-parented to init. `leaked_processes` finds the ones that outlived their test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

MARKER = "OPENRFT_TEST_SESSION"


def start(args: list[str], **popen: object) -> subprocess.Popen:
    """`Popen(args)` as the leader of a new session (so of its own process group)."""
    return subprocess.Popen(args, start_new_session=True, **popen)  # type: ignore[call-overload]


def stop_group(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the process's whole group, wait up to `grace_s` for the leader, then SIGKILL
    whatever is left in the group (leader or not) and reap the leader."""
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, sig)


@dataclass(frozen=True)
class Leftover:
    pid: int
    command: str


def leaked_processes(marker_value: str, suite_pid: int) -> list[Leftover]:
    """Live processes carrying `MARKER=marker_value`, other than the suite itself, that
    either run openrft or are no longer the suite's descendants (their parent died)."""
    leaked = []
    for pid in _marked_pids(f"{MARKER}={marker_value}".encode()):
        if pid == suite_pid:
            continue
        command = _command(pid)
        if command is not None and ("openrft" in command or not _descends(pid, suite_pid)):
            leaked.append(Leftover(pid, command))
    return leaked


def _marked_pids(entry: bytes) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:  # exited while we looked, or not ours to read
            continue
        if entry in environ.split(b"\0"):
            pids.append(int(proc.name))
    return pids


def _command(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None  # None: zombie


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after "pid (comm) state"
        if pid == ancestor:
            return True
    return False
