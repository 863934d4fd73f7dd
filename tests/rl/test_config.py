"""RFTConfig / load_config / resolve: OpenAI's shape accepted, errors name the YAML path,
and every "auto" resolved to the documented value."""

from __future__ import annotations

import pytest
import yaml

from openrft.errors import InvalidInput
from openrft.rl.config import RFTConfig, config_from_dict, load_config, resolve

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
