"""Attacks on the python grader's sandbox: each must fail cleanly and leave the host unharmed.

Every test asserts both the grader-side verdict (error code and message) and the
host-side effect that must be absent (file not written, secret not seen, no process
left behind, no connection accepted).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from openrft.graders.base import GradeResult
from openrft.graders.python_grader import PythonGraderImpl
from openrft.graders.sandbox import SandboxLimits
from openrft.graders.schema import PythonGrader

RUNTIME = "python_grader_runtime_error"
BUSY_LOOP = "def grade(sample, item):\n    while True:\n        pass\n"
FORK_BOMB = "import os\ndef grade(sample, item):\n    while True:\n        os.fork()\n"
FAST = SandboxLimits(wall_timeout_s=10, startup_timeout_s=10, memory_bytes=512 * 1024**2)


def grade_with(source: str, limits: SandboxLimits = FAST, item: dict | None = None) -> GradeResult:
    grader = PythonGraderImpl(PythonGrader(type="python", name="attack", source=source), limits)
    return grader.grade({"output_text": "x"}, item or {})


def only_error(result: GradeResult) -> str:
    """The single error's message, after checking it is a runtime error scored 0."""
    assert result.score == 0.0
    assert [e.code for e in result.errors] == [RUNTIME], result.errors
    return result.errors[0].message


def processes_of(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                pids.append(int(entry.name))
        except FileNotFoundError:  # exited while we looked
            continue
    return pids


def test_infinite_loop_is_stopped_by_the_wall_clock_limit() -> None:
    limits = SandboxLimits(wall_timeout_s=1, cpu_seconds=100, startup_timeout_s=10)
    started = time.monotonic()
    message = only_error(grade_with(BUSY_LOOP, limits))
    assert "grade() timed out after the 1 s wall-clock limit" in message
    assert time.monotonic() - started < 6


def test_cpu_burner_is_killed_by_the_cpu_limit_before_the_wall_clock() -> None:
    limits = SandboxLimits(wall_timeout_s=60, cpu_seconds=1, startup_timeout_s=10)
    started = time.monotonic()
    message = only_error(grade_with(BUSY_LOOP, limits))
    assert "SIGXCPU" in message and "CPU time limit of 1 s exceeded" in message
    assert time.monotonic() - started < 20


def test_memory_bomb_hits_the_memory_limit() -> None:
    source = "def grade(sample, item):\n    hog = bytearray(4 * 1024**3)\n    return 1.0\n"
    message = only_error(grade_with(source))
    assert message.startswith("MemoryError")
    assert "memory limit" in message and "line 2 of the grader source" in message


def test_growing_memory_bomb_hits_the_memory_limit() -> None:
    source = (
        "def grade(sample, item):\n"
        "    hoard = []\n"
        "    while True:\n"
        "        hoard.append(bytearray(64 * 1024**2))\n"
    )
    message = only_error(grade_with(source))
    assert message.startswith("MemoryError") and "line 4 of the grader source" in message


def test_fork_bomb_is_capped_and_leaves_no_process_behind() -> None:
    uid = 64999  # a uid of its own, so the count is exactly this bomb's processes
    assert processes_of(uid) == []
    limits = SandboxLimits(wall_timeout_s=20, max_processes=16, sandbox_uid=uid)
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, len(processes_of(uid)))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        started = time.monotonic()
        result = grade_with(FORK_BOMB, limits)
        elapsed = time.monotonic() - started
    finally:
        done.set()
        watcher.join()
    message = only_error(result)
    assert message.startswith("BlockingIOError") and "Resource temporarily unavailable" in message
    assert elapsed < 15  # stopped by the process limit, not by the wall clock
    assert 1 <= peak <= 16
    deadline = time.monotonic() + 5
    while processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(uid) == []


READ_FILE = """
def grade(sample, item):
    try:
        with open(item["path"]) as handle:
            return {"score": 1.0, "metadata": {"content": handle.read()}}
    except OSError as exc:
        return {"score": 0.0, "metadata": {"error": type(exc).__name__}}
"""


def test_host_etc_passwd_is_not_visible() -> None:
    host_passwd = Path("/etc/passwd").read_text()
    assert "root:" in host_passwd
    result = grade_with(READ_FILE, item={"path": "/etc/passwd"})
    assert result.errors == [] and result.score == 0.0
    assert result.metadata == {"error": "FileNotFoundError"}
    assert "root:" not in json.dumps(result.metadata)


@pytest.mark.parametrize("where", ["repository", "host_tmp"])
def test_host_files_are_not_readable(where: str, tmp_path: Path) -> None:
    secret = f"host-only-{uuid.uuid4()}"
    if where == "repository":  # this very file: no write, so a read-only checkout works too
        marker = Path(__file__).resolve()
        secret = "test_host_files_are_not_readable"
        assert secret in marker.read_text()
    else:
        marker = tmp_path / f".sandbox-marker-{uuid.uuid4().hex}"
        marker.write_text(secret)
    result = grade_with(READ_FILE, item={"path": str(marker)})
    assert result.errors == [] and result.score == 0.0
    assert result.metadata == {"error": "FileNotFoundError"}
    assert secret not in json.dumps(result.metadata)


def test_environment_secrets_are_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"s3cret-{uuid.uuid4()}"
    monkeypatch.setenv("OPENRFT_TEST_SECRET", secret)
    source = """
import os
def read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return type(exc).__name__
def grade(sample, item):
    return {"score": 1.0, "metadata": {
        "environ": dict(os.environ),
        "self": read("/proc/self/environ"),
        "init": read("/proc/1/environ"),
    }}
"""
    result = grade_with(source)
    assert result.errors == []
    assert secret not in json.dumps(result.metadata)
    assert "OPENRFT_TEST_SECRET" not in result.metadata["environ"]
    assert set(result.metadata["environ"]) <= {
        "PATH", "LANG", "HOME", "TMPDIR", "PWD",
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    }  # fmt: skip
    assert result.metadata["init"] == "PermissionError"  # bwrap's pid 1 runs as root


def test_tcp_connection_to_a_host_loopback_server_fails() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        port = server.getsockname()[1]
        source = (
            "import socket\ndef grade(sample, item):\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n    return 1.0\n"
        )
        message = only_error(grade_with(source))
    finally:
        stop.set()
        thread.join()
        server.close()
    assert message.startswith("ConnectionRefusedError") and "line 3" in message
    assert accepted == []


def test_abstract_unix_socket_of_the_host_is_unreachable() -> None:
    name = f"\0openrft-test-{uuid.uuid4().hex}"
    server = socket.socket(socket.AF_UNIX)
    server.bind(name)
    server.listen()
    server.setblocking(False)
    try:
        source = (
            "import socket\ndef grade(sample, item):\n"
            "    client = socket.socket(socket.AF_UNIX)\n"
            f"    client.connect({name!r})\n    return 1.0\n"
        )
        message = only_error(grade_with(source))
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
    finally:
        server.close()
    assert message.startswith("ConnectionRefusedError") and "line 4" in message


WRITE_FILE = """
import os
def grade(sample, item):
    os.makedirs(os.path.dirname(item["path"]), exist_ok=True)
    with open(item["path"], "w") as handle:
        handle.write("escaped")
    return {"score": 1.0, "metadata": {"sandbox_sees": os.path.exists(item["path"])}}
"""


def test_writes_to_the_host_tmp_stay_in_the_private_tmp(tmp_path: Path) -> None:
    target = tmp_path / "escape.txt"
    result = grade_with(WRITE_FILE, item={"path": str(target)})
    assert result.errors == [] and result.metadata == {"sandbox_sees": True}
    assert not target.exists()  # the write landed in the sandbox's own /tmp only


@pytest.mark.parametrize("where", ["var_tmp", "home"])
def test_writes_outside_tmp_are_refused(where: str) -> None:
    # Host folders that are outside /tmp wherever the checkout lives (a checkout under
    # /tmp would be inside the sandbox's private, writable /tmp).
    folder = Path("/var/tmp") if where == "var_tmp" else Path.home()
    target = folder / f".sandbox-write-{uuid.uuid4().hex}" / "escape.txt"
    try:
        message = only_error(grade_with(WRITE_FILE, item={"path": str(target)}))
        # creating the missing folder fails already: the sandbox's root is read-only
        assert message.startswith("OSError: [Errno 30] Read-only file system")
        assert "line 4 of the grader source" in message
        assert not target.parent.exists()
    finally:
        target.unlink(missing_ok=True)
        if target.parent.exists():
            target.parent.rmdir()


def test_the_python_runtime_is_mounted_read_only() -> None:
    site_packages = Path(pytest.__file__).resolve().parent.parent  # the venv's, bound read-only
    target = site_packages / f"evil-{uuid.uuid4().hex}.py"
    message = only_error(grade_with(WRITE_FILE, item={"path": str(target)}))
    assert "Read-only file system" in message
    assert not target.exists()


def test_the_private_tmp_is_capped_by_the_disk_limit() -> None:
    limits = SandboxLimits(wall_timeout_s=10, disk_bytes=1024**2)
    source = (
        "def grade(sample, item):\n"
        "    with open('/tmp/big', 'wb') as handle:\n"
        "        handle.write(b'x' * 4 * 1024**2)\n"
        "    return 1.0\n"
    )
    message = only_error(grade_with(source, limits))
    assert message.startswith("OSError") and "line 3" in message
    assert "File too large" in message or "No space left on device" in message


def test_user_code_runs_unprivileged_and_sees_only_its_own_processes() -> None:
    source = """
import os
def grade(sample, item):
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    return {"score": 1.0, "metadata": {
        "uid": os.getuid(),
        "capabilities": status["CapEff"].strip(),
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "hostname": os.uname().nodename,
    }}
"""
    result = grade_with(source)
    assert result.errors == []
    assert result.metadata["uid"] == 65534
    assert int(result.metadata["capabilities"], 16) == 0
    assert result.metadata["pids"] == [1, 2]  # bwrap's init and the runner, nothing of the host
    assert result.metadata["hostname"] == "sandbox"


def test_a_python_installed_under_the_host_tmp_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv"  # e.g. CI virtualenvs in /tmp: bound over the private /tmp
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    monkeypatch.setattr(sys, "executable", str(venv / "bin" / "python"))
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.setattr(sys, "exec_prefix", str(venv))
    source = (
        "import sys\ndef grade(s, i):\n    return {'score': 1, 'metadata': {'p': sys.prefix}}\n"
    )
    result = grade_with(source)
    assert result.errors == [] and result.metadata == {"p": str(venv)}


def test_a_python_started_through_a_dotdot_path_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `cd sub && ../.venv/bin/python` gives sys.executable "/x/sub/../.venv/bin/python";
    # /x/sub does not exist inside the sandbox, so the path must be normalised first.
    (tmp_path / "elsewhere").mkdir()
    bindir = Path(sys.executable).parent
    dotted = f"{tmp_path}/elsewhere/../../../../../../../../..{bindir}/{Path(sys.executable).name}"
    assert Path(dotted).exists()
    monkeypatch.setattr(sys, "executable", dotted)
    result = grade_with("def grade(s, i):\n    return 0.25\n")
    assert result.errors == [] and result.score == 0.25
