"""RFTConfig / load_config / resolve: OpenAI's shape accepted, errors name the YAML path,
and every "auto" resolved to the documented value."""

from __future__ import annotations

import typing
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from openrft.errors import InvalidInput
from openrft.rl.config import (
    OPENAI_HYPERPARAMETERS,
    ExpertSettings,
    GivenExpertSettings,
    GivenHyperparameters,
    GivenJobFields,
    Hyperparameters,
    ResolvedConfig,
    RFTConfig,
    config_from_dict,
    load_config,
    resolve,
)

GRADER = {
    "type": "string_check",
    "name": "g",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}
BASE = {"model": "tiny", "training_file": "train.jsonl", "grader": GRADER}


def _yaml(tmp_path, data) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _error(tmp_path, data) -> InvalidInput:
    path = _yaml(tmp_path, data)
    with pytest.raises(InvalidInput) as info:
        load_config(path)
    assert str(info.value).startswith(path)
    return info.value


def test_unknown_keys_are_rejected_with_their_path(tmp_path):
    assert _error(tmp_path, {**BASE, "epochs": 3}).location.endswith(": epochs")
    error = _error(tmp_path, {**BASE, "expert": {"groupsize": 4}})
    assert error.location.endswith(": expert.groupsize")
    error = _error(tmp_path, {**BASE, "hyperparameters": {"lr": 1}})
    assert error.location.endswith(": hyperparameters.lr")


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("hyperparameters", "n_epochs", 0),
        ("hyperparameters", "n_epochs", 51),
        ("hyperparameters", "batch_size", 257),
        ("hyperparameters", "learning_rate_multiplier", 0),
        ("hyperparameters", "compute_multiplier", 11),
        ("hyperparameters", "eval_interval", 0),
        ("hyperparameters", "eval_samples", 0),
        ("hyperparameters", "reasoning_effort", "extreme"),
        ("expert", "beta", -0.1),
        ("expert", "num_iterations", 0),
        ("expert", "loss_type", "ppo"),
        ("expert", "finetune", "qlora"),
        ("expert", "group_size", 1),
    ],
)
def test_out_of_range_values_name_the_field(tmp_path, section, field, value):
    error = _error(tmp_path, {**BASE, section: {field: value}})
    assert error.location.endswith(f": {section}.{field}")


def test_bad_grader_names_the_grader_field(tmp_path):
    bad = {k: v for k, v in GRADER.items() if k != "reference"}
    assert _error(tmp_path, {**BASE, "grader": bad}).location.endswith(": grader.reference")


def test_missing_required_field(tmp_path):
    data = {k: v for k, v in BASE.items() if k != "training_file"}
    assert _error(tmp_path, data).location.endswith(": training_file")


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model: tiny\ngrader: [unclosed\n")
    with pytest.raises(InvalidInput) as info:
        load_config(path)
    assert info.value.location.startswith(f"{path}:")


def test_every_hyperparameter_accepts_auto(tmp_path):
    auto = dict.fromkeys(
        ["n_epochs", "batch_size", "learning_rate_multiplier", "compute_multiplier",
         "eval_interval", "eval_samples"], "auto")
    config = load_config(_yaml(tmp_path, {**BASE, "hyperparameters": auto}))
    assert config.hyperparameters.batch_size == "auto"


def test_openai_method_nesting_is_accepted_unchanged(tmp_path):
    body = {  # an OpenAI fine-tuning job body, as sent to POST /fine_tuning/jobs
        "model": "tiny",
        "training_file": "train.jsonl",
        "suffix": "demo",
        "seed": 7,
        "method": {"type": "reinforcement", "reinforcement": {
            "grader": GRADER,
            "hyperparameters": {"reasoning_effort": "medium", "n_epochs": 2},
        }},
    }
    config = load_config(_yaml(tmp_path, body))
    assert config.grader == GRADER
    assert config.hyperparameters.n_epochs == 2
    assert config.hyperparameters.reasoning_effort == "medium"
    error = _error(tmp_path, {**body, "method": {"type": "supervised"}})
    assert "reinforcement" in error.message


def test_relative_files_are_found_next_to_the_config(tmp_path):
    (tmp_path / "train.jsonl").write_text("{}\n")
    config = load_config(_yaml(tmp_path, BASE))
    assert config.training_file == str(tmp_path / "train.jsonl")
    assert config.model == "tiny"  # not a local path: left as a hub id


def test_auto_values_resolve_to_the_documented_mappings():
    config = config_from_dict({**BASE, "seed": 3})
    r = resolve(config, n_train_rows=20, n_valid_rows=50)
    assert r.batch_size == 8  # min(8, 20)
    assert r.steps_per_epoch == 3  # ceil(20 / 8)
    assert r.n_epochs == 7  # fewest epochs with >= 20 steps: ceil(20 / 3)
    assert r.total_steps == 21
    assert r.eval_interval == 3  # ceil(21 / 10)
    assert r.eval_samples == 32  # min(32, 50)
    assert r.save_every == 3
    assert r.group_size == 8  # round(8 * 1.0)
    assert r.learning_rate == pytest.approx(2e-5)  # lora base lr * 1.0
    assert r.epsilon_high == 0.28  # dapo's clip-higher default
    assert r.seed == 3


def test_explicit_values_and_multipliers():
    config = RFTConfig.model_validate({
        **BASE,
        "hyperparameters": {"batch_size": 16, "n_epochs": 2, "compute_multiplier": 0.1,
                            "learning_rate_multiplier": 3, "eval_samples": 5},
        "expert": {"finetune": "full", "loss_type": "grpo", "max_steps": 3},
    })
    r = resolve(config, n_train_rows=10, n_valid_rows=2)
    assert r.batch_size == 10  # capped at the number of rows
    assert r.total_steps == 2  # 1 step per epoch * 2 epochs (< max_steps 3)
    assert r.group_size == 2  # round(0.8) = 1, clamped to 2
    assert r.learning_rate == pytest.approx(3e-6)  # full base lr 1e-6 * 3
    assert r.eval_samples == 2  # only 2 validation rows
    assert r.epsilon_high == 0.2  # = epsilon outside dapo
    assert resolve(config.model_copy(update={"seed": None}), 10).seed >= 0


def test_group_size_from_compute_multiplier_is_clamped():
    for cm, expected in [(0.5, 4), (2, 16), (10, 64)]:
        config = RFTConfig.model_validate({**BASE, "hyperparameters": {"compute_multiplier": cm}})
        assert resolve(config, 8).group_size == expected


_NO_OTHER = object()


def _other(field: FieldInfo) -> Any:
    """A valid value unlike the field's default, found from its type alone (no hand list):
    the other bool, another Literal choice, a different number, the same for each field of
    a nested settings model; _NO_OTHER where the type gives none (None, a mapping)."""
    default = field.get_default(call_default_factory=True)
    choices = typing.get_args(field.annotation)
    if isinstance(default, BaseModel):
        return {name: value for name, inner in type(default).model_fields.items()
                if (value := _other(inner)) is not _NO_OTHER}
    if isinstance(default, bool):
        return not default
    if typing.get_origin(field.annotation) is typing.Literal:
        return next(choice for choice in choices if choice != default)
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default / 2 if default else 0.5
    return _NO_OTHER


def _others(model: type[BaseModel]) -> dict[str, Any]:
    return {name: value for name, field in model.model_fields.items()
            if (value := _other(field)) is not _NO_OTHER}


def test_each_given_knob_is_defined_once_and_reaches_the_resolved_config():
    given = {**GivenJobFields.model_fields, **GivenHyperparameters.model_fields,
             **GivenExpertSettings.model_fields}
    # ResolvedConfig declares only what resolve() computes: no settings knob a second time.
    assert not set(ResolvedConfig.__annotations__) & set(given)
    # Every knob a settings class declares is used as given, or resolved by resolve().
    consumed = {"base_learning_rate", "max_steps"}  # folded into learning_rate, total_steps
    for settings in (Hyperparameters, ExpertSettings):
        for name in settings.model_fields:
            assert name in given or name in ResolvedConfig.__annotations__ or name in consumed
    assert set(OPENAI_HYPERPARAMETERS) == set(Hyperparameters.model_fields)

    # Every knob used as given changed from its default, and found unchanged (the settings
    # classes' validated value, nested settings included) on the resolved config.
    config = config_from_dict({**BASE, "hyperparameters": _others(GivenHyperparameters),
                               "expert": _others(GivenExpertSettings), "suffix": "x"})
    r = resolve(config, n_train_rows=20, n_valid_rows=4)
    for section, given_class in ((config, GivenJobFields), (config.hyperparameters,
                                 GivenHyperparameters), (config.expert, GivenExpertSettings)):
        for name, field in given_class.model_fields.items():
            assert getattr(r, name) == getattr(section, name), name
            if _other(field) is not _NO_OTHER:
                assert getattr(r, name) != field.get_default(call_default_factory=True), name
    assert r.monitor.patience == 4 and r.ray.grading_tasks == 3  # checked by hand once
    assert r.beta == 0.5 and r.loss_type == "grpo" and r.reasoning_effort == "low"


def test_resolved_config_round_trips_through_the_run_dirs_yaml():
    tools = [{"name": "lookup", "server_url": "http://127.0.0.1:9/tools"}]
    config = config_from_dict({**BASE, "seed": 5, "tools": tools, "max_episode_steps": 3,
                               "expert": {"beta": 0.04, "monitor": {"actions": {
                                   "truncation": "pause"}}, "ray": {"rollout_workers": 2}}})
    r = resolve(config, n_train_rows=12, n_valid_rows=3)
    saved = yaml.safe_load(yaml.safe_dump(r.to_dict(), sort_keys=False))  # as config.yaml
    assert saved["beta"] == 0.04 and saved["monitor"]["actions"] == {"truncation": "pause"}
    assert saved["ray"]["rollout_workers"] == 2 and saved["max_episode_steps"] == 3
    assert ResolvedConfig.model_validate(saved) == r
    with pytest.raises(ValueError, match="frozen"):
        r.beta = 1.0
