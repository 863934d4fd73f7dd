"""`RFTConfig`: one training config, shaped like OpenAI's fine-tuning job body.

A YAML file for `openrft train` holds the same keys as OpenAI's `POST /fine_tuning/jobs`
for a reinforcement job (`model`, `training_file`, `validation_file`, `seed`, `suffix`,
and `grader` / `response_format` / `hyperparameters`, either at the top level or under
`method.reinforcement` exactly as OpenAI nests them), plus an `expert:` mapping for the
knobs OpenAI keeps internal (group size, KL, clipping, LoRA, ...). Every field is
defined and documented once: the job fields here, the hyperparameters and expert knobs in
rl/knobs.py. "auto" values are resolved in one place, `resolve()`, into a ResolvedConfig
that inherits every knob used as given; the trainer, the docs (docs/training.md) and the
run directory's config.yaml all share it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from openrft.errors import InvalidInput
from openrft.rl.knobs import (
    ExpertSettings,
    GivenExpertSettings,
    GivenHyperparameters,
    Hyperparameters,
)
from openrft.rollout.tools import ToolServer
from openrft.strict_model import StrictModel

PREFLIGHT_ROWS = 32  # training rows a preflight samples (each group_size times)
PREFLIGHT_AUTO_FACTOR = 10  # auto preflight when the run samples >= 10x preflight's prompts


class GivenJobFields(StrictModel):
    """The job-body fields the trainer uses as given (ResolvedConfig inherits them)."""

    model: str
    """Base model: a catalog name (pulled on first use, see `openrft models list`), a local
    directory (HF format) or a hub id already in the local cache."""
    training_file: str
    """JSONL of prompts (messages ending with a user turn) plus reference fields."""
    validation_file: str | None = None
    """Optional JSONL in the same format: periodic and final validation reward."""
    grader: dict[str, Any]
    """An OpenAI grader object (string_check, text_similarity, python, score_model, multi)."""
    response_format: dict[str, Any] | None = None
    """OpenAI `{type: json_schema, json_schema: {...}}`: outputs parsed into output_json."""
    suffix: str | None = Field(default=None, max_length=64)
    """A name for the fine-tuned model (OpenAI's suffix)."""

    @field_validator("grader")
    @classmethod
    def _valid_grader(cls, grader: dict[str, Any]) -> dict[str, Any]:
        from openrft.graders.base import parse_grader

        parse_grader(grader)  # raises InvalidInput("grader.<path>", why)
        return grader

    @field_validator("response_format")
    @classmethod
    def _valid_response_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from openrft.rollout.structured import check_response_format

        if value is not None:
            check_response_format(value)  # raises InvalidInput("response_format.<path>", why)
        return value


class RFTConfig(GivenJobFields):
    """A reinforcement fine-tuning job: OpenAI's job-creation body plus `expert:` knobs."""

    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    seed: int | None = None
    """Seeds data order, sampling and initialisation. None: drawn once, saved in the run."""
    output_dir: str | None = None
    """Run directory. None: runs/<suffix or 'rft'>."""
    metadata: dict[str, str] | None = None
    """Free key/value labels, kept with the run (OpenAI's metadata)."""
    expert: ExpertSettings = Field(default_factory=ExpertSettings)
    tools: list[ToolServer] | None = None
    """Azure's agentic preview: tool servers `[{name, server_url, headers}]` the rollouts
    call; episodes alternate model turns and tool results (docs/agentic.md)."""
    max_episode_steps: int | None = Field(default=None, ge=1, le=50)
    """Model turns per episode when `tools` are set. None: 10 (Azure's example)."""

    @model_validator(mode="before")
    @classmethod
    def _lift_openai_method(cls, data: Any) -> Any:
        """Accept OpenAI's `method: {type: reinforcement, reinforcement: {...}}` nesting."""
        if not isinstance(data, dict) or "method" not in data:
            return data
        data = dict(data)
        method = data.pop("method")
        if not isinstance(method, dict) or method.get("type", "reinforcement") != "reinforcement":
            raise ValueError("method.type must be 'reinforcement'")
        for key, value in (method.get("reinforcement") or {}).items():
            if key in data:
                raise ValueError(f"{key} is given both at the top level and in method")
            data[key] = value
        return data


def _pydantic_path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not str(p).startswith(("function-", "literal[", "constrained"))]
    return ".".join(p for p in parts if p not in ("int", "float", "str"))


def config_from_dict(data: dict[str, Any], source: str = "config") -> RFTConfig:
    """Validate a config mapping; InvalidInput names `source: field.path`."""
    try:
        return RFTConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if isinstance(error.get("ctx", {}).get("error"), InvalidInput):
            inner = error["ctx"]["error"]
            raise InvalidInput(f"{source}: {inner.location}", inner.message) from None
        raise InvalidInput(f"{source}: {_pydantic_path(tuple(error['loc']))}", message) from None


def load_config(path: str | Path) -> RFTConfig:
    """Read a YAML config. Relative data/model paths are looked up next to the file first."""
    path = Path(path)
    from openrft.data.jsonl import read_text_file

    try:
        data = yaml.safe_load(read_text_file(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InvalidInput(where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise InvalidInput(str(path), "expected a mapping of config fields")
    config = config_from_dict(data, str(path))
    return _relative_to(config, path.parent)


def _relative_to(config: RFTConfig, base: Path) -> RFTConfig:
    updates: dict[str, str] = {}
    for name in ("model", "training_file", "validation_file"):
        value = getattr(config, name)
        if value and not Path(value).is_absolute() and (base / value).exists():
            updates[name] = str(base / value)
    return config.model_copy(update=updates)


def auto_group_size(compute_multiplier: float) -> int:
    """OpenAI's only exploration knob mapped to GRPO's group size: 8 completions at cm=1."""
    return min(64, max(2, round(8 * compute_multiplier)))


def auto_n_epochs(steps_per_epoch: int) -> int:
    """Fewest epochs that give at least 20 optimizer steps, between 1 and 10."""
    return min(10, max(1, math.ceil(20 / steps_per_epoch)))


class ResolvedConfig(GivenExpertSettings, GivenHyperparameters, GivenJobFields):
    """Every value the trainer uses, with "auto" and None replaced by concrete numbers.

    The knobs used as given are inherited from the Given* settings classes, so each is
    defined once; only the values `resolve()` computes are declared here. `to_dict()` is
    what a run directory's config.yaml holds (and what a resume compares against).
    """

    model_config = ConfigDict(frozen=True)

    seed: int
    output_dir: str
    n_train_rows: int
    n_valid_rows: int
    n_epochs: int
    batch_size: int  # prompts per step
    group_size: int  # completions per prompt
    steps_per_epoch: int
    total_steps: int
    learning_rate: float
    learning_rate_multiplier: float
    compute_multiplier: float
    eval_interval: int
    eval_samples: int  # validation rows per periodic validation (0: no validation file)
    save_every: int
    epsilon_high: float
    preflight: bool
    tools: list[dict[str, Any]] | None = None  # tool servers (agentic); None: single-turn
    max_episode_steps: int = 1  # model turns per episode (10 by default with tools)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


# OpenAI's seven RFT hyperparameters: ResolvedConfig holds each under the same name.
OPENAI_HYPERPARAMETERS = ("batch_size", "learning_rate_multiplier", "n_epochs",
                          "reasoning_effort", "compute_multiplier", "eval_interval",
                          "eval_samples")


def _given(settings: StrictModel, given: type[StrictModel]) -> dict[str, Any]:
    """The validated values of `settings` that ResolvedConfig inherits from `given`."""
    return {name: getattr(settings, name) for name in given.model_fields}


def _auto(value: Any, default: Any) -> Any:
    return default if value == "auto" or value is None else value


def resolve(config: RFTConfig, n_train_rows: int, n_valid_rows: int = 0) -> ResolvedConfig:
    """Replace every "auto"/None by its value: the ONE place these mappings live.

    learning_rate = base_learning_rate (auto: 2e-5 lora, 1e-6 full) * multiplier (auto 1)
    group_size    = expert.group_size or clamp(round(8 * compute_multiplier), 2, 64)
    batch_size    = min(batch_size (auto: 8), n_train_rows)
    n_epochs      = auto: fewest epochs with >= 20 steps, at most 10
    total_steps   = ceil(n_train_rows / batch_size) * n_epochs, capped by max_steps
    eval_interval = auto: ceil(total_steps / 10); eval_samples = auto: min(32, valid rows)
    save_every    = auto: eval_interval; epsilon_high = None: 0.28 (dapo) or epsilon
    preflight     = auto: total_steps * batch_size >= 10 * min(32, n_train_rows)
    seed          = None: drawn at random (the run records it)
    """
    hp, ex = config.hyperparameters, config.expert
    batch_size = min(_auto(hp.batch_size, 8), n_train_rows)
    steps_per_epoch = math.ceil(n_train_rows / batch_size)
    n_epochs = _auto(hp.n_epochs, auto_n_epochs(steps_per_epoch))
    total_steps = steps_per_epoch * n_epochs
    if ex.max_steps is not None:
        total_steps = min(total_steps, ex.max_steps)
    eval_interval = _auto(hp.eval_interval, math.ceil(total_steps / 10))
    base_lr = _auto(ex.base_learning_rate, 2e-5 if ex.finetune == "lora" else 1e-6)
    default_high = 0.28 if ex.loss_type == "dapo" else ex.epsilon
    return ResolvedConfig(
        **_given(config, GivenJobFields), **_given(hp, GivenHyperparameters),
        **_given(ex, GivenExpertSettings),
        seed=config.seed if config.seed is not None else random.SystemRandom().randrange(2**31),
        output_dir=config.output_dir or f"runs/{config.suffix or 'rft'}",
        n_train_rows=n_train_rows,
        n_valid_rows=n_valid_rows,
        n_epochs=n_epochs,
        batch_size=batch_size,
        group_size=ex.group_size or auto_group_size(_auto(hp.compute_multiplier, 1.0)),
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        learning_rate=base_lr * _auto(hp.learning_rate_multiplier, 1.0),
        learning_rate_multiplier=_auto(hp.learning_rate_multiplier, 1.0),
        compute_multiplier=_auto(hp.compute_multiplier, 1.0),
        eval_interval=eval_interval,
        eval_samples=min(_auto(hp.eval_samples, 32), n_valid_rows),
        save_every=_auto(ex.save_every, eval_interval),
        epsilon_high=ex.epsilon_high if ex.epsilon_high is not None else default_high,
        preflight=_auto_preflight(ex.preflight, total_steps * batch_size, n_train_rows),
        tools=[t.model_dump(exclude_none=True) for t in config.tools] if config.tools else None,
        max_episode_steps=(config.max_episode_steps or 10) if config.tools else 1,
    )


def _auto_preflight(preflight: bool | str, sampled_prompts: int, n_train_rows: int) -> bool:
    """auto: preflight when it costs at most 1/PREFLIGHT_AUTO_FACTOR of the run's sampling."""
    if isinstance(preflight, bool):
        return preflight
    return sampled_prompts >= PREFLIGHT_AUTO_FACTOR * min(PREFLIGHT_ROWS, n_train_rows)
