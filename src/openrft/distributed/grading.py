"""`RayGrading`: the trainer's reward function, run as Ray tasks spread over the cluster.

A batch's samples are cut into `grading_tasks` contiguous chunks; each task builds the
grader from its config on whichever node runs it (python sandboxes, model-grader calls)
and grades its chunk with `grade_batch`. Grading is a pure function of (sample, item),
so Ray may retry a task whose node died.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openrft.distributed.cluster import require_ray, wait
from openrft.distributed.settings import RaySettings
from openrft.distributed.shards import shard_bounds
from openrft.graders.base import GradeResult, grade_batch


def grade_chunk(grader: dict[str, Any], samples: Sequence[dict[str, Any]],
                items: Sequence[dict[str, Any]]) -> list[GradeResult]:
    """One grading task: build the grader here, grade, release it."""
    return grade_batch(grader, samples, items)


class RayGrading:
    """`rewards = grading(samples, items)`, as `make_reward_fn` returns, on Ray tasks."""

    def __init__(self, grader: dict[str, Any], settings: RaySettings) -> None:
        ray = require_ray()
        self._task = ray.remote(grade_chunk).options(
            num_cpus=settings.cpus_per_grading_task, max_retries=2)
        self._grader = ray.put(grader)
        self.tasks = settings.grading_tasks

    def __call__(self, samples: Sequence[dict[str, Any]],
                 items: Sequence[dict[str, Any]]) -> list[GradeResult]:
        bounds = shard_bounds(len(samples), self.tasks)
        calls = [self._task.remote(self._grader, list(samples[a:b]), list(items[a:b]))
                 for a, b in bounds]
        return [result for chunk in wait(calls) for result in chunk]

    def close(self) -> None:
        """Nothing is held between batches; the tasks released their graders."""
