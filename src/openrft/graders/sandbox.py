"""Run untrusted grader code under bubblewrap with resource limits.

The isolation is Debian's bubblewrap, not a home-made jail: new PID, network, IPC, UTS,
mount (and cgroup) namespaces, an empty environment, a read-only view of /usr and of the
Python runtime only, and a private size-capped tmpfs /tmp. Inside, `sandbox_runner.py`
sets rlimits (memory, CPU, file size, open files, processes) and drops root to an
unprivileged uid before it loads user code. The host enforces the wall clock per call
and kills the sandbox (its PID namespace dies with it) when a call overruns or crashes.

One sandbox process grades a whole batch (the source is loaded once); a call that
crashes or times out is reported alone, and the remaining calls go to a fresh sandbox.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrft.errors import InvalidInput
from openrft.graders.base import ScoringError

GIB = 1024**3
RUNNER_ON_HOST = Path(__file__).with_name("sandbox_runner.py")
RUNNER_IN_SANDBOX = "/opt/openrft/sandbox_runner.py"
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
STDERR_TAIL_BYTES = 2000
ENV_PREFIX = "OPENRFT_PYTHON_GRADER_"
RUNTIME = "python_grader_runtime_error"
SERVER = "python_grader_server_error"


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed grader (defaults follow OpenAI's python grader).

    Every field can be set from the environment as OPENRFT_PYTHON_GRADER_<FIELD>,
    e.g. OPENRFT_PYTHON_GRADER_WALL_TIMEOUT_S=30.
    """

    wall_timeout_s: float = 120.0  # per call (and for loading the source), host enforced
    memory_bytes: int = 2 * GIB  # RLIMIT_AS: address space of each sandbox process
    disk_bytes: int = 1 * GIB  # RLIMIT_FSIZE and the size of the private /tmp tmpfs
    cpus: int = 2  # thread pools (OMP/BLAS) size; CPU seconds = wall x cpus
    cpu_seconds: int | None = None  # RLIMIT_CPU per call; None: ceil(wall_timeout_s * cpus)
    max_processes: int = 64  # RLIMIT_NPROC: processes + threads of the sandbox uid
    max_open_files: int = 256  # RLIMIT_NOFILE
    startup_timeout_s: float = 10.0  # starting bwrap + python, on top of wall_timeout_s
    sandbox_uid: int = 65534  # "nobody": the uid user code runs as when the host is root

    @property
    def cpu_seconds_per_call(self) -> int:
        return self.cpu_seconds or max(1, int(-(-self.wall_timeout_s * self.cpus // 1)))

    def rlimits(self) -> dict[str, int]:
        return {
            "RLIMIT_AS": self.memory_bytes,
            "RLIMIT_FSIZE": self.disk_bytes,
            "RLIMIT_NOFILE": self.max_open_files,
            "RLIMIT_NPROC": self.max_processes,
            "RLIMIT_CORE": 0,
        }

    @classmethod
    def from_env(cls) -> SandboxLimits:
        """Defaults overridden by OPENRFT_PYTHON_GRADER_<FIELD> variables."""
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = ENV_PREFIX + spec.name.upper()
            raw = os.environ.get(name)
            if raw is None:
                continue
            number_type = float if spec.name.endswith("_s") else int
            try:
                values[spec.name] = number_type(raw)
            except ValueError:
                expected = "expected a number" if number_type is float else "expected an integer"
                raise InvalidInput(name, f"{expected}, got {raw!r}") from None
            if values[spec.name] <= 0:
                raise InvalidInput(name, f"must be positive, got {raw!r}")
        return cls(**values)


@dataclass
class CallOutcome:
    """The runner's answer to one call, or why there is none; latency excludes startup."""

    response: dict[str, Any] | None = None
    error: ScoringError | None = None
    latency_s: float = 0.0


def find_bubblewrap() -> str | None:
    return shutil.which("bwrap")


def _runtime_dirs() -> list[str]:
    """The Python installation(s) the sandbox needs: venv and base prefix, outside /usr."""
    candidates = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    candidates.add(os.path.dirname(sys.executable))
    kept: list[str] = []
    for path in sorted(os.path.abspath(p) for p in candidates):  # a folder before its contents
        if path == "/" or any(path == k or path.startswith(k + "/") for k in [*kept, "/usr"]):
            continue
        kept.append(path)
    return kept


def _parent_dirs(paths: Sequence[str]) -> list[str]:
    """Every ancestor of `paths` (bwrap would create them 0700, unreadable after the uid drop)."""
    parents = {str(p) for path in paths for p in Path(path).parents if str(p) != "/"}
    return sorted(parents, key=lambda p: (p.count("/"), p))


def bwrap_command(bwrap: str, limits: SandboxLimits) -> list[str]:
    """The bubblewrap command line that starts the runner in a fresh sandbox."""
    command = [bwrap, "--die-with-parent", "--new-session", "--clearenv"]
    if os.geteuid() == 0:
        # As root, a user namespace would map the sandbox to host root, for which
        # RLIMIT_NPROC does not count. Instead keep only the two capabilities the runner
        # needs to switch to `sandbox_uid`; it loses them with the switch.
        command += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
        command += ["--unshare-cgroup-try", "--cap-drop", "ALL"]
        command += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        command += ["--unshare-all"]
    threads = str(limits.cpus)
    for name, value in [
        ("PATH", "/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("HOME", "/tmp"),
        ("TMPDIR", "/tmp"),
        ("OMP_NUM_THREADS", threads),
        ("OPENBLAS_NUM_THREADS", threads),
        ("MKL_NUM_THREADS", threads),
    ]:
        command += ["--setenv", name, value]
    command += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/", name)
        if path.is_symlink():
            command += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            command += ["--ro-bind", str(path), str(path)]
    # /tmp first, so that a Python installed under the host's /tmp is bound on top of it
    command += ["--perms", "1777", "--size", str(limits.disk_bytes), "--tmpfs", "/tmp"]
    runtime = _runtime_dirs()
    for directory in _parent_dirs([*runtime, RUNNER_IN_SANDBOX]):
        if directory != "/tmp":
            command += ["--perms", "0755", "--dir", directory]
    for directory in runtime:
        command += ["--ro-bind", directory, directory]
    command += ["--ro-bind", str(RUNNER_ON_HOST), RUNNER_IN_SANDBOX]
    command += ["--proc", "/proc", "--dev", "/dev", "--hostname", "sandbox"]
    command += ["--remount-ro", "/", "--chdir", "/tmp"]
    # normalised: a "/x/../venv/bin/python" path would not resolve inside the sandbox
    return command + ["--", os.path.abspath(sys.executable), "-I", "-B", RUNNER_IN_SANDBOX]


def _describe_exit(returncode: int, limits: SandboxLimits) -> str:
    """bwrap exits 128+N when the sandboxed process died of signal N."""
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if number == 0:
        return f"exit code {returncode}"
    hints = {
        signal.SIGXCPU: f"CPU time limit of {limits.cpu_seconds_per_call} s exceeded",
        signal.SIGKILL: "killed, e.g. by a hard CPU or memory limit",
        signal.SIGSEGV: "segmentation fault",
        signal.SIGXFSZ: f"file size limit of {limits.disk_bytes} bytes exceeded",
    }
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"exit code {returncode}"
    hint = hints.get(signal.Signals(number))
    return f"killed by {name}" + (f": {hint}" if hint else "")


class _StderrTail(threading.Thread):
    """Drains the sandbox's stderr (user prints land there) and keeps only its tail."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.tail = b""

    def run(self) -> None:
        for chunk in iter(lambda: self.stream.read(65536), b""):
            self.tail = (self.tail + chunk)[-STDERR_TAIL_BYTES:]

    def text(self) -> str:
        return self.tail.decode("utf-8", "replace").strip()


class _Timeout(Exception):
    pass


class SandboxProcess:
    """One bubblewrap sandbox with one grader source loaded, answering calls in order."""

    def __init__(self, bwrap: str, source: str, limits: SandboxLimits, calls: int) -> None:
        self.bwrap = bwrap
        self.source = source
        self.limits = limits
        self.calls = calls
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: _StderrTail | None = None
        self._buffer = b""

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the sandbox and load the source; ScoringError when either fails."""
        try:
            self._proc = subprocess.Popen(
                bwrap_command(self.bwrap, self.limits),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin"},  # even bwrap itself never sees host secrets
                start_new_session=True,
                bufsize=0,
            )
        except OSError as exc:
            raise ScoringError(SERVER, f"could not start bubblewrap ({self.bwrap}): {exc}") from exc
        self._stderr = _StderrTail(self._proc.stderr)
        self._stderr.start()
        header = {
            "source": self.source,
            "rlimits": self.limits.rlimits(),
            "cpu_seconds_per_call": self.limits.cpu_seconds_per_call,
            "calls": self.calls,
            "uid": self.limits.sandbox_uid,
            "gid": self.limits.sandbox_uid,
        }
        deadline = time.monotonic() + self.limits.startup_timeout_s + self.limits.wall_timeout_s
        answer = self._exchange(json.dumps(header).encode() + b"\n", deadline, loading=True)
        if answer.get("ready") is not True:
            self._raise_runner_error(answer.get("error"), loading=True)

    def call(self, request_line: bytes) -> dict[str, Any]:
        """Send one encoded {"sample", "item"} line; return the runner's answer."""
        deadline = time.monotonic() + self.limits.wall_timeout_s
        return self._exchange(request_line, deadline, loading=False)

    def close(self) -> None:
        """Kill the sandbox: its PID namespace, and every process in it, dies too."""
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        if self._stderr is not None:
            self._stderr.join(timeout=5)
            self._proc.stderr.close()  # type: ignore[union-attr]
        self._proc = None

    def _exchange(self, line: bytes, deadline: float, loading: bool) -> dict[str, Any]:
        what = "loading the grader source" if loading else "grade()"
        try:
            self._write_all(line, deadline)
            answer = self._read_line(deadline)
        except _Timeout:
            self.close()
            limit = self.limits.wall_timeout_s
            message = f"{what} timed out after the {limit:g} s wall-clock limit"
            raise ScoringError(RUNTIME, message) from None
        if answer is None:
            raise self._died(what, loading)
        try:
            reply: Any = json.loads(answer)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            self.close()
            raise ScoringError(RUNTIME, f"the sandbox sent an unreadable answer: {answer[:200]!r}")
        return reply

    def _write_all(self, data: bytes, deadline: float) -> None:
        fd = self._proc.stdin.fileno()  # type: ignore[union-attr]
        os.set_blocking(fd, False)
        view = memoryview(data)
        while view:
            if not self._wait_for(fd, select.POLLOUT, deadline):
                continue
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                return  # the process is gone; reading reports why

    def _read_line(self, deadline: float) -> bytes | None:
        fd = self._proc.stdout.fileno()  # type: ignore[union-attr]
        while b"\n" not in self._buffer:
            if not self._wait_for(fd, select.POLLIN, deadline):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
            if len(self._buffer) > MAX_RESPONSE_BYTES:
                self.close()
                raise ScoringError(RUNTIME, f"grade() result exceeds {MAX_RESPONSE_BYTES} bytes")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    @staticmethod
    def _wait_for(fd: int, event: int, deadline: float) -> bool:
        """Whether `fd` became ready (or hung up) in time; poll, not select: fds > 1023 work."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Timeout
        poller = select.poll()
        poller.register(fd, event)
        return bool(poller.poll(remaining * 1000))

    def _died(self, what: str, loading: bool) -> ScoringError:
        assert self._proc is not None and self._stderr is not None
        returncode = self._proc.wait()  # EOF: even bwrap closed its end, so it has exited
        self._stderr.join(timeout=5)
        stderr = self._stderr.text()
        self.close()
        if loading and stderr.startswith("bwrap:"):
            return ScoringError(SERVER, f"bubblewrap could not create the sandbox: {stderr}")
        detail = f": {stderr[-500:]}" if stderr else ""
        exit_text = _describe_exit(returncode, self.limits)
        message = f"the sandbox process died during {what} ({exit_text}){detail}"
        return ScoringError(RUNTIME, message)

    def _raise_runner_error(self, error: Any, loading: bool) -> None:
        self.close()
        if not isinstance(error, dict):
            raise ScoringError(RUNTIME, f"unexpected answer from the sandbox: {error!r}"[:500])
        message = str(error.get("message", ""))
        if error.get("kind") == "setup":
            raise ScoringError(SERVER, f"the sandbox could not apply its limits: {message}")
        line = error.get("line")
        where = f" (line {line} of the grader source)" if line else ""
        raise ScoringError(RUNTIME, f"loading the grader source failed: {message}{where}")


def encode_request(sample: dict[str, Any], item: dict[str, Any]) -> bytes:
    """One protocol line; ScoringError(sample_parse_error) when it is not JSON."""
    try:
        return json.dumps({"sample": sample, "item": item}).encode() + b"\n"
    except (TypeError, ValueError) as exc:
        raise ScoringError("sample_parse_error", f"sample/item is not JSON: {exc}") from None


def run_calls(
    bwrap: str, source: str, requests: Sequence[bytes], limits: SandboxLimits
) -> list[CallOutcome]:
    """Answer every request line, restarting the sandbox after a call crashed or timed out."""
    outcomes: list[CallOutcome] = []
    while len(outcomes) < len(requests):
        pending = requests[len(outcomes) :]
        with SandboxProcess(bwrap, source, limits, calls=len(pending)) as sandbox:
            try:
                sandbox.start()
            except ScoringError as exc:  # the source cannot load: every call fails the same way
                return outcomes + [CallOutcome(error=exc) for _ in pending]
            for line in pending:
                started = time.perf_counter()
                try:
                    outcome = CallOutcome(response=sandbox.call(line))
                except ScoringError as exc:
                    outcome = CallOutcome(error=exc)
                outcome.latency_s = time.perf_counter() - started
                outcomes.append(outcome)
                if outcome.error is not None:
                    break
    return outcomes
