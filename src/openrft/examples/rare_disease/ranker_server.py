"""The findings task's tool in the grader: an HTTP endpoint grader that ranks genes.

A fastapi app on 127.0.0.1 (an ephemeral port) in a background thread of the process that
runs the act, alive only inside `with RankerGraderServer(...)`. It speaks the endpoint
grader protocol (graders/endpoint.py): POST `{"sample": {"output_text"}, "item": {"gene",
"target"}, "trace_id"}` to `/grade?reading_weight=w`, answer `{"score", "rank",
"findings_f1"}`, the score being `findings_task.findings_reward` (the gene's rank, and the
answer's terms against those of the reference findings `target`, weighted w). The weight
is in the URL so that the act's two RFT arms share one server with different rewards.
The python grader cannot do this job: its sandbox has neither the HPO release nor the
ranker's 5,132-gene index, which take seconds to build and must be built once, not per
answer.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel

from openrft.examples.rare_disease.findings_task import (
    READING_WEIGHT,
    findings_f1,
    findings_reward,
    grader_spec,
)
from openrft.examples.rare_disease.matcher import rank_of

START_TIMEOUT_S = 30.0


class _Sample(BaseModel):
    output_text: str | None = None


class _Item(BaseModel):
    gene: str
    target: str | None = None  # the reference findings; needed when the reading weight > 0


class GradeRequest(BaseModel):
    sample: _Sample
    item: _Item
    trace_id: str | None = None


Terms = Callable[[str], list[str]]


def ranker_app(rank_text: Callable[[str], list[str]], find_terms: Terms) -> FastAPI:
    """`/grade`: the true gene's rank in `rank_text(answer)`, the F1 of `find_terms(answer)`
    against `find_terms(target)`, and the reward mixing them."""
    app = FastAPI(title="hypergeom_d rank and findings grader")

    @app.post("/grade")
    def grade(request: GradeRequest,
              reading_weight: float = Query(READING_WEIGHT, ge=0, le=1)) -> dict[str, Any]:
        if reading_weight > 0 and request.item.target is None:
            raise HTTPException(422, "item has no 'target' (the reference findings) to "
                                     "score the answer's findings against")
        answer = request.sample.output_text or ""
        rank = rank_of(request.item.gene, rank_text(answer))
        f1 = findings_f1(find_terms(answer), find_terms(request.item.target or ""))
        return {"score": findings_reward(rank, f1, reading_weight), "rank": rank,
                "findings_f1": f1}

    return app


class RankerGraderServer:
    """Serves `ranker_app` on 127.0.0.1 while the `with` block runs; `grader(w)` is the
    spec of its endpoint grader with reading weight w."""

    def __init__(self, rank_text: Callable[[str], list[str]], find_terms: Terms) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))  # bound before the thread starts: no port race
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(ranker_app(rank_text, find_terms), log_level="warning",
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]}, daemon=True)

    def grader(self, reading_weight: float) -> dict[str, Any]:
        """The endpoint grader spec of this server with that reading weight."""
        return grader_spec(f"http://127.0.0.1:{self.port}/grade", reading_weight)

    def __enter__(self) -> RankerGraderServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the ranker grader server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=START_TIMEOUT_S)
        self._socket.close()
