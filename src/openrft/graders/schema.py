"""OpenAI-shaped grader objects, field for field.

A grader JSON written for OpenAI's reinforcement fine-tuning validates here unchanged
(field names and semantics from OpenAI's graders guide and openai-python's
`types/graders`). Unknown fields are rejected so that a typo never silently changes a
reward.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from openrft.strict_model import StrictModel


class _Grader(StrictModel):
    """A grader object. A missing `name` defaults to the grader's `type`, as OpenAI's API
    accepts graders without one (the graders guide's python and multi examples have none)."""

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data and isinstance(data.get("type"), str):
            return {**data, "name": data["type"]}
        return data


class InputTextContent(StrictModel):
    type: Literal["input_text", "output_text", "text"] = "input_text"
    text: str


class GraderMessage(StrictModel):
    """One chat message of a model grader's prompt; content may hold templates."""

    role: Literal["user", "assistant", "system", "developer"]
    content: str | InputTextContent | list[InputTextContent | str]
    type: Literal["message"] | None = None

    def text(self) -> str:
        """The message content flattened to plain text (before template rendering)."""
        content = self.content
        if isinstance(content, str):
            return content
        if isinstance(content, InputTextContent):
            return content.text
        return "".join(part if isinstance(part, str) else part.text for part in content)


class SamplingParams(StrictModel):
    """Sampling parameters of a model grader (OpenAI: `sampling_params`)."""

    seed: int | None = None
    top_p: float | None = Field(default=None, gt=0, le=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_completions_tokens: int | None = Field(default=None, ge=1)
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


class StringCheckGrader(_Grader):
    type: Literal["string_check"]
    name: str
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]


TextSimilarityMetric = Literal[
    "cosine",
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
]


class TextSimilarityGrader(_Grader):
    type: Literal["text_similarity"]
    name: str
    input: str
    reference: str
    evaluation_metric: TextSimilarityMetric
    pass_threshold: float | None = Field(default=None, ge=0, le=1)


class PythonGrader(_Grader):
    type: Literal["python"]
    name: str
    source: str = Field(max_length=256 * 1024)
    image_tag: str | None = None
    # Not in openai-python's RFT type, but in OpenAI's evals python grader and in Azure's
    # RFT examples: accepted; the reward stays the score, metadata says whether it passed.
    pass_threshold: float | None = None


class ScoreModelGrader(_Grader):
    type: Literal["score_model"]
    name: str
    model: str
    input: list[GraderMessage] = Field(min_length=1)
    range: list[float] | None = Field(default=None, min_length=2, max_length=2)
    sampling_params: SamplingParams | None = None
    pass_threshold: float | None = None

    @model_validator(mode="after")
    def _range_ordered(self) -> ScoreModelGrader:
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError("range must be [low, high] with low < high")
        return self

    @property
    def score_range(self) -> tuple[float, float]:
        return (self.range[0], self.range[1]) if self.range else (0.0, 1.0)


class LabelModelGrader(_Grader):
    type: Literal["label_model"]
    name: str
    model: str
    input: list[GraderMessage] = Field(min_length=1)
    labels: list[str] = Field(min_length=1)
    passing_labels: list[str] = Field(min_length=1)
    sampling_params: SamplingParams | None = None

    @model_validator(mode="after")
    def _passing_subset(self) -> LabelModelGrader:
        unknown = [label for label in self.passing_labels if label not in self.labels]
        if unknown:
            raise ValueError(f"passing_labels {unknown} are not in labels {self.labels}")
        return self


class EndpointGrader(_Grader):
    """Azure's agentic-RFT `endpoint` grader: POST `{sample, item, trace_id}` to `url`,
    read `{"score": float}` back (graders/endpoint.py)."""

    type: Literal["endpoint"]
    name: str
    url: str = Field(pattern=r"^https?://\S+$")
    headers: dict[str, str] | None = None
    rate_limit: float | None = Field(default=None, gt=0)  # requests per second
    pass_threshold: float | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=600)  # OpenRFT: <= 10 min


SubGrader = Annotated[
    StringCheckGrader
    | TextSimilarityGrader
    | PythonGrader
    | ScoreModelGrader
    | LabelModelGrader
    | EndpointGrader,
    Field(discriminator="type"),
]


class MultiGrader(_Grader):
    """Several graders combined by an arithmetic formula over their names (no nesting)."""

    type: Literal["multi"]
    name: str
    graders: dict[str, SubGrader] = Field(min_length=1)
    calculate_output: str

    @model_validator(mode="before")
    @classmethod
    def _single_grader(cls, data: Any) -> Any:
        """openai-python types `graders` as one grader object; the guide uses a mapping.
        One grader object becomes `{its name (or type): grader}`."""
        graders = data.get("graders") if isinstance(data, dict) else None
        if isinstance(graders, dict) and isinstance(graders.get("type"), str):
            key = graders.get("name") or graders["type"]
            return {**data, "graders": {key: graders}}
        return data


Grader = Annotated[
    StringCheckGrader
    | TextSimilarityGrader
    | PythonGrader
    | ScoreModelGrader
    | LabelModelGrader
    | EndpointGrader
    | MultiGrader,
    Field(discriminator="type"),
]

GraderSpec = (
    StringCheckGrader
    | TextSimilarityGrader
    | PythonGrader
    | ScoreModelGrader
    | LabelModelGrader
    | EndpointGrader
    | MultiGrader
)

# Types OpenAI accepts as the top-level grader of a reinforcement job (label_model only
# inside multi). The service enforces this; the library accepts all of them.
REINFORCEMENT_TOP_LEVEL_TYPES = (
    "string_check",
    "text_similarity",
    "python",
    "score_model",
    "multi",
    "endpoint",
)


def grader_type(grader: dict[str, Any]) -> str:
    """The `type` field of a raw grader dict, or '' when missing."""
    value = grader.get("type") if isinstance(grader, dict) else None
    return value if isinstance(value, str) else ""
