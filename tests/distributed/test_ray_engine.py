"""The Ray backend's parts on the shared local cluster: grading tasks (python sandboxes
included) and placement that fails clearly when the cluster is too small."""

from __future__ import annotations

import pytest

from openrft.distributed.settings import RaySettings
from openrft.graders.base import grade_batch

pytestmark = pytest.mark.slow

# The python grader runs each call in a bubblewrap sandbox; on Ray, inside a task.
LENGTH_GRADER = {
    "type": "python", "name": "length",
    "source": "def grade(sample, item):\n"
              "    import os\n"
              "    return len(sample['output_text']) / item['n'] + (os.getpid() > 0) - 1\n",
}


def test_grading_tasks_give_the_local_results_python_sandbox_included(ray_driver):
    from openrft.distributed.grading import RayGrading

    texts = ["a", "bb", "ccc", "dddd", "", "ffffff", "ggggggg"]
    samples = [{"output_text": t} for t in texts]
    items = [{"n": 4}] * len(texts)
    grading = RayGrading(LENGTH_GRADER, RaySettings(grading_tasks=3))
    on_ray = grading(samples, items)
    assert [r.score for r in on_ray] == [len(t) / 4 for t in texts]  # by hand
    local = grade_batch(LENGTH_GRADER, samples, items)
    assert [(r.score, r.errors) for r in on_ray] == [(r.score, r.errors) for r in local]
    assert grading([], []) == []


def test_a_cluster_too_small_for_the_rollout_workers_fails_clearly(ray_driver, tiny_model):
    from openrft.distributed.cluster import ClusterError
    from openrft.distributed.rollout import RayRolloutEngine

    model, tokenizer = tiny_model
    settings = RaySettings(rollout_workers=3, cpus_per_rollout_worker=1,
                           placement_timeout_s=3)  # the cluster has 2 CPUs
    with pytest.raises(ClusterError, match=r"could not place 3 rollout workers of "
                                           r"\{'CPU': 1\.0\} within 3 s"):
        RayRolloutEngine(model, tokenizer, settings)
    # the failed reservation is withdrawn: a fitting engine still starts afterwards
    fitting = RayRolloutEngine(model, tokenizer, RaySettings(placement_timeout_s=60))
    fitting.close()


def test_a_local_instance_listens_on_the_loopback_interface_only(monkeypatch):
    """No address and no RAY_ADDRESS: the run starts its own Ray and ends it, its
    processes gone after disconnect. Under the tests (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0,
    tests/conftest.py) that instance is reachable from this machine only."""
    import psutil

    from openrft.distributed.cluster import connect, disconnect, head_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    before = {p.pid for p in psutil.process_iter()}
    assert connect(None)
    try:
        host, _, _ = head_address().rpartition(":")
        assert host == "127.0.0.1"
    finally:
        disconnect()
    started = [p for p in psutil.process_iter(["cmdline"]) if p.pid not in before
               and "ray" in " ".join(p.info["cmdline"] or []).lower()]
    _, alive = psutil.wait_procs(started, timeout=15)
    assert alive == []
