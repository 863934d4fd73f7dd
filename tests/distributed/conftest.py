"""A real local Ray cluster shared by the slow Ray tests, and a tiny task to train on it.

`ray start --head` on this machine with 2 CPUs, started once per session and always
stopped (`ray stop --force`) at the end, even when a test fails. Without the `ray` extra
the Ray tests skip, unless OPENRFT_REQUIRE_RAY=1 (CI), where they fail instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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


@dataclass
class RayCluster:
    """One head node on this machine; `stop()`/`start()` let a test kill and revive it."""

    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}  # workers inherit PYTHONPATH
        with self.log.open("ab") as log:
            subprocess.run(
                [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port",
                 str(self.port), "--num-cpus", "2", "--include-dashboard=false",
                 "--object-store-memory", str(200 * 1024 * 1024), "--disable-usage-stats"],
                stdout=log, stderr=subprocess.STDOUT, env=env, check=True, timeout=180)

    def stop(self) -> None:
        with self.log.open("ab") as log:
            subprocess.run([RAY, "stop", "--force"], stdout=log, stderr=subprocess.STDOUT,
                           timeout=120, check=False)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    require_ray()
    cluster = RayCluster(free_port(), tmp_path_factory.mktemp("ray") / "ray.log")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def ray_driver(ray_cluster: RayCluster) -> Iterator[Any]:
    """This process joined to the cluster (and left again after the test)."""
    from openrft.distributed.cluster import connect, disconnect

    started = connect(ray_cluster.address)
    import ray

    yield ray
    if started:
        disconnect()


@pytest.fixture(scope="module")
def toy_train_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"question {i}"}]} for i in range(8)]
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
