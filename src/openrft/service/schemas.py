"""Request and response bodies, field for field as in openai-python's types.

Responses use OpenAI's names, `Literal` object tags, Unix-second timestamps and
cursor pages `{object: "list", data, has_more}`. Requests reject unknown fields where a
typo would silently change training (job creation), and ignore them where the SDK may
send newer options (chat completions).
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from openrft.rollout.reasoning import ReasoningEffort
from openrft.strict_model import StrictModel

T = TypeVar("T")

AutoInt = Literal["auto"] | int
AutoFloat = Literal["auto"] | float


class ListPage(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


# --- files -------------------------------------------------------------------------


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


# --- fine-tuning jobs --------------------------------------------------------------


class ReinforcementHyperparameters(StrictModel):
    """OpenAI's RFT hyperparameters with their documented ranges."""

    batch_size: AutoInt | None = Field(default=None, description="1-256")
    learning_rate_multiplier: AutoFloat | None = None
    n_epochs: AutoInt | None = None
    reasoning_effort: ReasoningEffort | None = None
    compute_multiplier: AutoFloat | None = None
    eval_interval: AutoInt | None = None
    eval_samples: AutoInt | None = None


class SupervisedHyperparameters(StrictModel):
    batch_size: AutoInt | None = None
    learning_rate_multiplier: AutoFloat | None = None
    n_epochs: AutoInt | None = None


class ReinforcementMethod(StrictModel):
    grader: dict[str, Any]
    hyperparameters: ReinforcementHyperparameters | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = Field(
        default=None, description="Azure agentic preview: [{name, server_url, headers}].")
    max_episode_steps: int | None = Field(default=None, description="Model turns per episode.")


class SupervisedMethod(StrictModel):
    hyperparameters: SupervisedHyperparameters | None = None


class Method(StrictModel):
    type: Literal["supervised", "dpo", "reinforcement"]
    reinforcement: ReinforcementMethod | None = None
    supervised: SupervisedMethod | None = None
    dpo: dict[str, Any] | None = None


class WandbSettings(StrictModel):
    """OpenAI's Weights & Biases integration settings."""

    project: str = Field(min_length=1)
    name: str | None = None
    entity: str | None = None
    tags: list[str] | None = None


class Integration(StrictModel):
    type: Literal["wandb"]
    wandb: WandbSettings


# OpenAI's metadata limits: at most 16 pairs, keys <= 64 characters, values <= 512.
MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class CreateJobRequest(StrictModel):
    model: str = Field(min_length=1)
    training_file: str
    validation_file: str | None = None
    method: Method | None = None
    hyperparameters: SupervisedHyperparameters | None = None  # deprecated (SFT) form
    suffix: str | None = Field(default=None, max_length=64)
    seed: int | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = Field(default=None, max_length=16)
    integrations: list[Integration] | None = None
    expert: dict[str, Any] | None = Field(
        default=None,
        description="OpenRFT extension: engine knobs (group_size, max_tokens, lora_rank, ...).",
    )


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: dict[str, Any]
    model: str
    organization_id: str
    result_files: list[str] = Field(default_factory=list)
    seed: int
    status: Literal[
        "validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"
    ]
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    method: dict[str, Any] | None = None
    user_provided_suffix: str | None = None


class FineTuningJobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = None


class FineTuningJobCheckpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: dict[str, Any]


# --- graders -----------------------------------------------------------------------


class GraderRunRequest(StrictModel):
    grader: dict[str, Any]
    model_sample: str
    item: dict[str, Any] | None = None


class GraderValidateRequest(StrictModel):
    grader: dict[str, Any]


# --- models ------------------------------------------------------------------------


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


# --- chat completions --------------------------------------------------------------


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=8)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: dict[str, Any] | None = None
