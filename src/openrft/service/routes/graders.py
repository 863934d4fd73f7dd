"""`/v1/fine_tuning/alpha/graders/{run,validate}`: OpenAI's grader test endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from openrft.graders import base as graders
from openrft.service.deps import PrincipalDep, SettingsDep
from openrft.service.grader_results import run_response, sample_from_text
from openrft.service.outbound import check_outbound, grader_urls
from openrft.service.schemas import GraderRunRequest, GraderValidateRequest

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders", tags=["graders"])


@router.post("/validate")
def validate_grader(body: GraderValidateRequest, _: PrincipalDep) -> dict[str, Any]:
    spec = graders.validate(body.grader)  # InvalidInput -> 400 naming grader.<field>
    return {"grader": spec.model_dump(mode="json", exclude_none=True)}


@router.post("/run")
def run_grader(body: GraderRunRequest, _: PrincipalDep, settings: SettingsDep) -> dict[str, Any]:
    graders.validate(body.grader)  # a malformed grader is a 400 before any URL is checked
    check_outbound(grader_urls(body.grader, "grader"), settings.outbound_hosts)
    result = graders.run(body.grader, sample_from_text(body.model_sample), body.item or {})
    return run_response(result)
