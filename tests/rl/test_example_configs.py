"""Every shipped example config and its data files validate (what `openrft train` checks
before any model loads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from openrft.data.dataset import load_dataset
from openrft.rl.config import load_config, resolve

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "configs").glob("*.yaml"))


def test_examples_exist():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_and_data_validate(path):
    config = load_config(path)
    train = load_dataset(config.training_file, config.grader)
    valid = load_dataset(config.validation_file, config.grader) if config.validation_file else []
    resolved = resolve(config, len(train), len(valid))
    assert resolved.total_steps >= 1
