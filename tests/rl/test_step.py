"""Step helpers that need no model: grading with parse errors, data order, seeds."""

from __future__ import annotations

from collections import Counter

from openrft.graders.base import GradeResult
from openrft.rl.config import config_from_dict, resolve
from openrft.rl.step import derived_seed, grade_samples
from openrft.rl.trainer import batch_indices
from openrft.rollout.engine import Sample

GRADER = {"type": "string_check", "name": "g", "input": "{{ sample.output_text }}",
          "reference": "x", "operation": "eq"}


def test_every_sample_is_graded_with_its_own_row_unparsable_ones_too():
    seen = []

    def reward_fn(samples, items):
        seen.extend(zip(samples, items, strict=True))
        return [GradeResult(score=0.5) for _ in samples]

    samples = [
        Sample(prompt_index=0, output_text="{}", output_json={}),
        Sample(prompt_index=0, output_text="oops", parse_error="not JSON"),
        Sample(prompt_index=1, output_text="{}", output_json={}),
    ]
    items = [{"id": "a"}, {"id": "b"}]
    results = grade_samples(reward_fn, samples, items)
    assert [r.score for r in results] == [0.5, 0.5, 0.5]  # the grader's, parse error or not
    assert all(r.errors == [] for r in results)
    # the unparsable one went as output_text only; each went with its own prompt's row
    assert [sample for sample, _ in seen] == [
        {"output_text": "{}", "output_json": {}}, {"output_text": "oops"},
        {"output_text": "{}", "output_json": {}},
    ]
    assert [item["id"] for _, item in seen] == ["a", "a", "b"]


def test_each_epoch_visits_every_row_once_in_a_seeded_order():
    config = config_from_dict({"model": "m", "training_file": "t", "grader": GRADER, "seed": 4,
                               "hyperparameters": {"batch_size": 3, "n_epochs": 2}})
    cfg = resolve(config, n_train_rows=7)
    assert cfg.steps_per_epoch == 3 and cfg.total_steps == 6
    epochs = [batch_indices(cfg, step) for step in range(1, 7)]
    assert [e for e, _ in epochs] == [0, 0, 0, 1, 1, 1]
    assert [len(rows) for _, rows in epochs] == [3, 3, 1, 3, 3, 1]  # last batch is short
    for epoch in (0, 1):
        rows = [r for e, batch in epochs if e == epoch for r in batch]
        assert Counter(rows) == Counter(range(7))
    assert epochs[0][1] + epochs[1][1] != epochs[3][1] + epochs[4][1]  # reshuffled
    assert batch_indices(cfg, 5) == epochs[4]  # a pure function of the step


def test_derived_seeds_differ_by_step_and_purpose_and_repeat():
    seeds = {derived_seed(0, step, purpose) for step in range(50) for purpose in (0, 1)}
    assert len(seeds) == 100
    assert derived_seed(3, 2, 1) == derived_seed(3, 2, 1)


def test_generation_params_carry_reasoning_budget_and_response_format():
    from openrft.rl.policy_setup import make_generation_params

    response_format = {"type": "json_object"}
    config = config_from_dict({
        "model": "m", "training_file": "t", "grader": GRADER, "seed": 0,
        "response_format": response_format,
        "hyperparameters": {"reasoning_effort": "low"},
        "expert": {"max_tokens": 100, "temperature": 0.7, "top_p": 0.9},
    })
    params = make_generation_params(resolve(config, n_train_rows=4))
    assert params.reasoning_budget == 25  # low = 25% of max_tokens
    assert (params.max_tokens, params.temperature, params.top_p) == (100, 0.7, 0.9)
    assert params.response_format == response_format
    default = config.model_copy(update={"hyperparameters": config.hyperparameters.model_copy(
        update={"reasoning_effort": "default"})})
    assert make_generation_params(resolve(default, n_train_rows=4)).reasoning_budget is None
