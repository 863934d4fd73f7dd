"""The Ray tests' driver connection and training data (the cluster: tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rl_task import make_config, toy_files

__all__ = ["make_config", "toy_files"]


@pytest.fixture
def ray_driver(ray_cluster: Any) -> Iterator[Any]:
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
