"""Shared fixtures: tiny local models are built once per session (no hub access), child
processes die with their test, and no process the suite started outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from process_groups import MARKER, leaked_processes, start, stop_group

# Tests run on 2 shared cores: keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
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
