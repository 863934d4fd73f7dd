"""The python grader's entry point *inside* the bubblewrap sandbox.

This file is bind-mounted read-only into the sandbox and run as its main process, so
it uses the standard library only (openrft itself is not visible in there). It sets the
resource limits, drops root to an unprivileged uid, loads the user's `grade` once and
then answers one JSON line per call:

    host -> runner  {"source", "rlimits": {name: value}, "cpu_seconds_per_call", "calls",
                     "uid", "gid"}
    runner -> host  {"ready": true}  or  {"error": {"kind": "setup" | "load", "message"}}
    host -> runner  {"sample": {...}, "item": {...}}              (once per call)
    runner -> host  {"score": float, "metadata": {...}}
                    or {"error": {"kind": "exception" | "bad_return", "message", "line"}}

The host trusts nothing in these answers beyond their shape; the limits that matter
(wall clock, namespaces) are enforced from outside.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import resource
import traceback
from typing import IO, Any

GRADER_FILENAME = "<grader>"
MAX_MESSAGE_CHARS = 2000


class BadReturn(Exception):
    """`grade` returned something that is not a number or a {"score", "metadata"} dict."""


def take_protocol_streams() -> tuple[IO[bytes], IO[str]]:
    """Keep private copies of stdin/stdout for the protocol.

    User code then reads /dev/null from fd 0 and its prints (Python or C level) land on
    stderr, so neither can consume or corrupt the protocol. The copies are
    non-inheritable, so subprocesses of user code do not get them.
    """
    protocol_in = os.fdopen(os.dup(0), "rb")
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return protocol_in, protocol_out


def send(stream: IO[str], message: dict[str, Any]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def apply_limits(rlimits: dict[str, int], cpu_seconds_total: int) -> None:
    """Lower the rlimits (soft = hard, so user code cannot raise them again)."""
    for name, value in rlimits.items():
        resource.setrlimit(getattr(resource, name), (value, value))
    # The CPU hard limit (SIGKILL) covers every call of this batch; the soft limit
    # (SIGXCPU) is re-armed before each call, so one call cannot spend the others' budget.
    # User code could raise its soft limit up to the hard one; the wall clock still holds.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds_total, cpu_seconds_total))


def drop_privileges(uid: int | None, gid: int | None) -> None:
    """Become an unprivileged user: no capabilities, and RLIMIT_NPROC applies (not to root)."""
    if os.getuid() != 0 or uid is None or gid is None:
        return
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError(f"could not drop privileges to uid {uid}")


def arm_cpu_limit(cpu_seconds_per_call: int) -> None:
    """Let the next call use at most `cpu_seconds_per_call` more CPU seconds (SIGXCPU after)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (min(used + cpu_seconds_per_call, hard - 1), hard))


def safe_text(value: object) -> str:
    try:
        text = str(value)
    except Exception:  # a user exception whose __str__ itself fails
        text = "<unprintable>"
    return text[:MAX_MESSAGE_CHARS]


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """Type, message and the innermost line of the user's source that was running."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == GRADER_FILENAME]
    message = f"{type(exc).__name__}: {safe_text(exc)}"
    if isinstance(exc, MemoryError):
        message += " (the sandbox memory limit was reached)"
    return {"kind": "exception", "message": message, "line": frames[-1].lineno if frames else None}


def as_score(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BadReturn(f"{what} must be a number, got {type(value).__name__}: {safe_text(value)}")
    return float(value)  # NaN and infinities travel as JSON NaN/Infinity; the host rejects them


def normalise_result(value: object) -> dict[str, Any]:
    """A number, or OpenRFT's extension {"score": number, "metadata": {JSON}}."""
    if not isinstance(value, dict):
        return {"score": as_score(value, "grade() result"), "metadata": {}}
    keys = sorted(str(k) for k in value)
    if "score" not in value or not set(keys) <= {"score", "metadata"}:
        raise BadReturn(f"a dict result must have keys 'score' and optional 'metadata', got {keys}")
    metadata = value.get("metadata", {})
    if not isinstance(metadata, dict):
        raise BadReturn(f"'metadata' must be a dict, got {type(metadata).__name__}")
    try:
        metadata = json.loads(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise BadReturn(f"'metadata' is not JSON-serialisable: {safe_text(exc)}") from None
    return {"score": as_score(value["score"], "'score'"), "metadata": metadata}


def load_grade(source: str) -> Any:
    namespace: dict[str, Any] = {"__name__": "__grader__"}
    exec(compile(source, GRADER_FILENAME, "exec"), namespace)
    grade = namespace.get("grade")
    if not callable(grade):
        raise TypeError("the source does not define a callable `grade`")
    return grade


def run_call(grade: Any, request: dict[str, Any], runner_pid: int, cpu_seconds: int) -> dict:
    arm_cpu_limit(cpu_seconds)
    try:
        response = normalise_result(grade(request["sample"], request["item"]))
    except BadReturn as exc:
        response = {"error": {"kind": "bad_return", "message": str(exc), "line": None}}
    except BaseException as exc:  # user code may raise anything, SystemExit too
        response = {"error": describe_exception(exc)}
    if os.getpid() != runner_pid:  # a process forked by user code must not answer
        os._exit(0)
    return response


def main() -> None:
    protocol_in, protocol_out = take_protocol_streams()
    header = json.loads(protocol_in.readline())
    runner_pid = os.getpid()
    cpu_seconds = int(header["cpu_seconds_per_call"])
    try:
        # + 1 s per call: `arm_cpu_limit` rounds the CPU time used so far up
        apply_limits(header["rlimits"], (cpu_seconds + 1) * (int(header["calls"]) + 1) + 1)
        drop_privileges(header["uid"], header["gid"])
    except (OSError, ValueError) as exc:
        send(protocol_out, {"error": {"kind": "setup", "message": safe_text(exc)}})
        return
    try:
        arm_cpu_limit(cpu_seconds)
        grade = load_grade(header["source"])
    except BaseException as exc:  # top-level user code may raise anything
        if os.getpid() != runner_pid:
            os._exit(0)
        send(protocol_out, {"error": {**describe_exception(exc), "kind": "load"}})
        return
    if os.getpid() != runner_pid:
        os._exit(0)
    send(protocol_out, {"ready": True})
    for line in protocol_in:
        send(protocol_out, run_call(grade, json.loads(line), runner_pid, cpu_seconds))


if __name__ == "__main__":
    main()
