"""Turning a `POST /v1/fine_tuning/jobs` body into a stored job, checking everything first.

All checks happen before a row exists: the files belong to the caller, the grader is
valid, every training/validation row has the `{{ item.x }}` fields the grader uses,
the hyperparameters and expert knobs build a valid `RFTConfig`, and the base model is
one this server may serve (`model_access`: catalog, model roots, the project's `ft:`
models, after aliases). A bad request is a 400 naming the field or `file-id:line`;
nothing is stored.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from openrft.data.dataset import Dataset, check_grader_fields
from openrft.data.jsonl import parse_jsonl_numbered, read_text_file, require_objects
from openrft.errors import InvalidInput
from openrft.service.auth import Principal
from openrft.service.errors import APIError
from openrft.service.model_access import resolve_model
from openrft.service.outbound import check_outbound, outbound_urls
from openrft.service.schemas import CreateJobRequest
from openrft.service.settings import ServiceSettings
from openrft.service.store import queries
from openrft.service.store.ids import new_id, now
from openrft.service.store.models import Job, StoredFile


def resolve_model_path(session: Session, settings: ServiceSettings, project_id: str,
                       name: str) -> str:
    """What `load_model` should receive for a job's or a chat request's `model` (a 400
    `model_not_found` for anything the server may not serve; see `model_access`)."""
    return resolve_model(session, settings, project_id, name).load_as


def normalized_method(body: CreateJobRequest) -> dict[str, Any]:
    """The job's `method` as stored and shown, with the deprecated top-level SFT form lifted."""
    if body.method is None:
        hyper = body.hyperparameters.model_dump(exclude_none=True) if body.hyperparameters else {}
        return {"type": "supervised", "supervised": {"hyperparameters": hyper}}
    method = body.method.model_dump(exclude_none=True)
    if body.hyperparameters is not None and method["type"] != "supervised":
        raise APIError(400, "hyperparameters: the top-level form is the deprecated supervised "
                            f"one; give {method['type']} hyperparameters in "
                            f"method.{method['type']}.hyperparameters",
                       param="hyperparameters", code="invalid_value")
    if method["type"] == "dpo":
        raise APIError(400, "method.type: 'dpo' is not supported by OpenRFT "
                            "(use 'reinforcement' or 'supervised')", param="method.type")
    if method["type"] == "reinforcement" and "reinforcement" not in method:
        raise APIError(400, "method.reinforcement: required when method.type is 'reinforcement'",
                       param="method.reinforcement")
    method.setdefault(method["type"], {})
    return method


def build_rft_config(job: Job, data_dir: Path) -> Any:
    """The engine's `RFTConfig` for a stored reinforcement job (validates knobs too)."""
    from openrft.rl.config import config_from_dict

    body = dict(job.method["reinforcement"])
    validation = data_dir / "validation.jsonl"
    return config_from_dict(
        {
            "model": job.model_path,
            "training_file": str(data_dir / "train.jsonl"),
            "validation_file": str(validation) if job.validation_file else None,
            "seed": job.seed,
            "suffix": job.suffix,
            "output_dir": job.output_dir,
            "expert": job.expert or {},
            **body,
        },
        source="request",
    )


def _owned_file(session: Session, principal: Principal, file_id: str, param: str) -> StoredFile:
    file = queries.get_file(session, principal.project_id, file_id)
    if file is None:
        raise APIError(400, f"{param}: no such file '{file_id}'", param=param,
                       code="invalid_file")
    if file.purpose != "fine-tune":
        raise APIError(400, f"{param}: file '{file_id}' has purpose {file.purpose!r}, "
                            "expected 'fine-tune'", param=param, code="invalid_file")
    return file


def _dataset(file: StoredFile) -> Dataset:
    numbered = parse_jsonl_numbered(read_text_file(file.path), file.id)
    rows = require_objects(numbered, file.id)
    return Dataset(source=file.id, rows=rows, line_numbers=[line for line, _ in numbered])


def _check_rows(method: dict[str, Any], files: list[StoredFile]) -> None:
    """Every row fits the method: RFT prompts end with a user turn and carry grader fields."""
    for file in files:
        dataset = _dataset(file)
        for row, line in zip(dataset.rows, dataset.line_numbers, strict=True):
            last_role = row["messages"][-1].get("role")
            if method["type"] == "reinforcement" and last_role != "user":
                raise InvalidInput(f"{file.id}:{line}: messages[-1].role",
                                   f"a reinforcement prompt must end with a user message, "
                                   f"got {last_role!r}")
            if method["type"] == "supervised" and last_role != "assistant":
                raise InvalidInput(f"{file.id}:{line}: messages[-1].role",
                                   f"a supervised row must end with the assistant's answer, "
                                   f"got {last_role!r}")
        if method["type"] == "reinforcement":
            check_grader_fields(dataset, method["reinforcement"]["grader"])


def _check_grader(method: dict[str, Any]) -> None:
    from openrft.graders.base import validate
    from openrft.graders.schema import REINFORCEMENT_TOP_LEVEL_TYPES, grader_type

    grader = method["reinforcement"]["grader"]
    try:
        validate(grader)
    except InvalidInput as exc:
        raise InvalidInput(f"method.reinforcement.{exc.location}", exc.message) from None
    kind = grader_type(grader)
    if kind not in REINFORCEMENT_TOP_LEVEL_TYPES:  # as OpenAI: label_model in multi only
        raise APIError(400, f"Invalid value for 'method.reinforcement.grader.type': {kind!r} "
                            f"cannot be the grader of a reinforcement job; use one of "
                            f"{', '.join(REINFORCEMENT_TOP_LEVEL_TYPES)} (a {kind} grader "
                            "may be used inside a multi grader)",
                       param="method.reinforcement.grader.type", code="invalid_value")


def prepare_job(session: Session, settings: ServiceSettings, principal: Principal,
                body: CreateJobRequest) -> Job:
    """Validate a creation request and return the (unsaved) job, its data copied in."""
    method = normalized_method(body)
    training = _owned_file(session, principal, body.training_file, "training_file")
    files = [training]
    if body.validation_file:
        files.append(_owned_file(session, principal, body.validation_file, "validation_file"))
    model_path = resolve_model_path(session, settings, principal.project_id, body.model)
    if method["type"] == "reinforcement":
        _check_grader(method)
        check_outbound(outbound_urls(method), settings.outbound_hosts)
    _check_rows(method, files)
    job_id = new_id("ftjob-")
    job = Job(
        id=job_id, project_id=principal.project_id, model=body.model, model_path=model_path,
        training_file=training.id, validation_file=body.validation_file, method=method,
        expert=body.expert, suffix=body.suffix,
        seed=body.seed if body.seed is not None else random.SystemRandom().randrange(2**31),
        job_metadata=body.metadata, status="validating_files",
        integrations=[i.model_dump(exclude_none=True) for i in body.integrations or []] or None,
        output_dir=str(settings.jobs_dir / job_id / "run"), created_at=now(),
    )
    if method["type"] == "reinforcement":
        build_rft_config(job, job_data_dir(settings, job_id))  # 400 on a bad knob
    _copy_data(settings, job_id, files)
    return job


def job_data_dir(settings: ServiceSettings, job_id: str) -> Path:
    return settings.jobs_dir / job_id / "data"


def _copy_data(settings: ServiceSettings, job_id: str, files: list[StoredFile]) -> None:
    """Snapshot the job's files, so deleting an upload never breaks a job (or its resume)."""
    data_dir = job_data_dir(settings, job_id)
    data_dir.mkdir(parents=True, exist_ok=True)
    names = ["train.jsonl", "validation.jsonl"]
    for file, name in zip(files, names, strict=False):
        shutil.copyfile(file.path, data_dir / name)
