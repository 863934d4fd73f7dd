"""Shared fixtures: tiny local models are built once per session (no hub access), and a
real local Ray cluster (`ray start --head`, 2 CPUs) shared by the slow Ray tests, always
stopped with `ray stop --force` at the end, even when a test fails. Without the `ray`
extra those tests skip, unless OPENRFT_REQUIRE_RAY=1 (CI), where they fail instead."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests run on 2 shared cores: keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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
