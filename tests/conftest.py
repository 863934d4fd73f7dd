"""Shared fixtures: tiny local models are built once per session (no hub access), child
processes die with their test, no process the suite started outlives it, and a real local
Ray cluster (`ray start --head`, 2 CPUs) is shared by the slow Ray tests, always stopped
with `ray stop --force` at the end, even when a test fails. Without the `ray` extra those
tests skip, unless OPENRFT_REQUIRE_RAY=1 (CI), where they fail instead."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from process_groups import MARKER, leaked_processes, start, stop_group

# Tests run on 2 shared cores: keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The test Ray cluster is one machine: Ray then takes 127.0.0.1 as every node's address
# (drivers and agents included), so no Ray traffic uses the host's network interface.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Ray 2.60 turns token authentication on when ~/.ray/auth_token exists (left by any other
# cluster this account started); the loopback-only test cluster runs without it, so
# its readiness probe and job clients do not depend on the home directory.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Every process this run starts inherits the marker; see no_process_outlives_the_suite.
SESSION = os.environ[MARKER] = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite() -> Iterator[None]:
    """Fails the run (after killing them) if processes the suite started are still alive
    at its end: any openrft process, or anything whose parent has died."""
    yield
    deadline = time.monotonic() + 10  # a process stopped by the last test may be exiting
    while (leaked := leaked_processes(SESSION, os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.2)
    for leftover in leaked:
        os.kill(leftover.pid, signal.SIGKILL)
    assert not leaked, "processes outlived the test suite (killed now): " + "; ".join(
        f"{p.pid}: {p.command[:200]}" for p in leaked)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """`spawn(args, **popen)`: a process in its own process group; at teardown, pass or
    fail, the whole group gets SIGTERM, then SIGKILL after 15 s."""
    started: list[subprocess.Popen] = []

    def factory(args: list[str], **popen: object) -> subprocess.Popen:
        started.append(start(args, **popen))
        return started[-1]

    yield factory
    for process in reversed(started):
        stop_group(process)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama + BPE tokenizer + chat template, built once per test session."""
    from openrft.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model")


@pytest.fixture
def tiny_model(tiny_model_dir: Path):
    """A fresh `(model, tokenizer)` pair per test (eval mode), so mutations never leak."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct from the catalog, in the default models directory
    ($OPENRFT_MODELS_DIR or ~/.cache/openrft/models): pulled once per machine (CI caches
    it), shared by every slow real-model test."""
    from openrft.models.catalog import ensure_model

    return ensure_model("smollm2-135m-instruct")


RAY = str(Path(sys.executable).with_name("ray"))


def require_ray() -> None:
    if importlib.util.find_spec("ray") is not None:
        return
    message = "ray is not installed (pip install -e '.[ray]')"
    if os.environ.get("OPENRFT_REQUIRE_RAY") == "1":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class RayCluster:
    """One head node on this machine; `stop()`/`start()` let a test kill and revive it."""

    port: int
    dashboard_port: int  # the job-submission API (`openrft serve --ray-address`)
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self) -> None:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}  # workers inherit PYTHONPATH
        with self.log.open("ab") as log:
            subprocess.run(
                [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port",
                 str(self.port), "--num-cpus", "2", "--dashboard-host", "127.0.0.1",
                 "--dashboard-port", str(self.dashboard_port),
                 "--object-store-memory", str(200 * 1024 * 1024), "--disable-usage-stats"],
                stdout=log, stderr=subprocess.STDOUT, env=env, check=True, timeout=180)
        deadline = time.monotonic() + 120
        while not _answers(self.dashboard_url + "/api/version"):  # job submission is ready
            assert time.monotonic() < deadline, "the Ray dashboard did not start"
            time.sleep(0.5)

    def stop(self) -> None:
        with self.log.open("ab") as log:
            subprocess.run([RAY, "stop", "--force"], stdout=log, stderr=subprocess.STDOUT,
                           timeout=120, check=False)


@pytest.fixture
def ray_installed() -> None:
    """Skips (or, in CI, fails) a test that needs the ray package but no cluster."""
    require_ray()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    require_ray()
    cluster = RayCluster(free_port(), free_port(), tmp_path_factory.mktemp("ray") / "ray.log")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
