"""The training-health monitor on hand-built metric sequences: each check fires on its
pathology, with the step it began, and stays quiet just below its threshold."""

from __future__ import annotations

import math

import pytest

from openrft.rl.config import config_from_dict, resolve
from openrft.rl.health_checks import (
    RunFacts,
    check_entropy_collapse,
    check_grader_dominance,
    check_grader_errors,
    check_kl_blowup,
    check_length_drift,
    check_no_signal,
    check_overfitting,
    check_reward_near_max,
    check_truncation,
    noise_band,
)
from openrft.rl.health_metrics import health_metrics, signal_shares
from openrft.rl.monitor import TrainingMonitor, run_facts
from openrft.rl.monitor_settings import MonitorSettings

S = MonitorSettings()  # patience 3 and the documented defaults
# 200 validation samples: the noise band sqrt(2) / sqrt(200) = 0.1 equals overfit_delta
FACTS = RunFacts(group_size=4, max_tokens=16, reward_floor=0.0, reward_max=1.0, beta=0.0,
                 num_iterations=1, eval_samples=200)


def rows(**series: list) -> list[dict]:
    """Metric rows, step 1.., one per element of the given per-key series."""
    n = max(len(v) for v in series.values())
    return [{"step": i + 1, **{k: v[i] for k, v in series.items() if v[i] is not None}}
            for i in range(n)]


# -- the per-step numbers -----------------------------------------------------------------


def test_health_metrics_classify_groups_and_count_errors():
    rewards = [0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1]  # all-fail, all-pass, mixed
    truncated = [True] * 4 + [False] * 8  # the all-fail group was cut
    metrics = health_metrics(
        rewards, 4, 0.0, 1.0, truncated, [True] + [False] * 11,
        [["python_grader_runtime_error"], [], ["python_grader_runtime_error",
                                                "other_error"]] + [[]] * 9,
        [{}] * 12,
    )
    assert metrics["groups"] == 3 and metrics["samples"] == 12
    assert metrics["all_fail_groups"] == 1 and metrics["all_pass_groups"] == 1
    assert metrics["truncated_in_reasoning_fraction"] == pytest.approx(1 / 12)
    assert metrics["truncated_reward_mean"] == 0 and metrics["finished_reward_mean"] == 0.75
    assert metrics["grader_error_codes"] == {"python_grader_runtime_error": 2, "other_error": 1}
    assert "sub_reward_signal_share" not in metrics  # not a multi grader


def test_signal_shares_follow_the_within_group_variation():
    # one group of 4; a and b independent within it. Centred: a = [.5,-.5,.5,-.5],
    # b = [.5,.5,-.5,-.5]. r = 3a + b = [4,1,3,0], centred [2,-1,1,-2], sum of squares 10;
    # cov(a, r) = 3 -> R^2 = 9/10; cov(b, r) = 1 -> R^2 = 1/10.
    a, b = [1, 0, 1, 0], [1, 1, 0, 0]
    subs = [{"a": x, "b": y} for x, y in zip(a, b, strict=True)]
    shares = signal_shares([3 * x + y for x, y in zip(a, b, strict=True)], subs, 4)
    assert shares == pytest.approx({"a": 0.9, "b": 0.1})
    # equal weights: each explains half
    assert signal_shares([x + y for x, y in zip(a, b, strict=True)], subs, 4) == pytest.approx(
        {"a": 0.5, "b": 0.5})
    # b varies only *between* groups (constant within each): all signal is a's
    subs = [{"a": 1, "b": 0}, {"a": 0, "b": 0}, {"a": 1, "b": 5}, {"a": 0, "b": 5}]
    assert signal_shares([1, 0, 6, 5], subs, 2) == pytest.approx({"a": 1.0, "b": 0.0})
    assert signal_shares([1, 1, 0, 0], subs, 2) == {}  # no group differs: nothing to share


def test_health_metrics_of_a_multi_grader_carry_sub_grader_numbers():
    subs = [{"a": 1, "b": 1}, {"a": 0, "b": 1}, {"a": 1, "b": 0}, {"a": 0, "b": 0}]
    metrics = health_metrics([2, 1, 1, 0], 4, 0.0, 1.0, [False] * 4, [False] * 4, [[]] * 4,
                             subs)
    assert metrics["truncated_reward_mean"] is None
    assert metrics["sub_reward_mean"] == {"a": 0.5, "b": 0.5}
    assert metrics["sub_reward_signal_share"] == pytest.approx({"a": 0.5, "b": 0.5})


# -- each check ------------------------------------------------------------------------------


def test_no_signal_fires_after_patience_steps_and_says_all_fail():
    history = rows(zero_variance_groups=[1, 4, 4, 4], groups=[4] * 4, all_fail_groups=[1, 4, 4, 4],
                   all_pass_groups=[0] * 4)
    assert check_no_signal(history[:3], S, FACTS) is None  # only steps 2-3 qualify
    finding = check_no_signal(history, S, FACTS)
    assert finding.kind == "no_signal" and finding.step == 2
    assert "scored the minimum" in finding.message
    assert finding.numbers["zero_variance_share"] == 1.0
    assert finding.numbers["all_fail_groups"] == 12


def test_no_signal_says_all_pass_and_stays_quiet_below_the_share():
    history = rows(zero_variance_groups=[4] * 3, groups=[4] * 3, all_fail_groups=[0] * 3,
                   all_pass_groups=[4] * 3, train_reward_mean=[1.0] * 3)
    assert "already solves" in check_no_signal(history, S, FACTS).message
    learned = rows(zero_variance_groups=[0, 0, 0, 4, 4, 4], groups=[4] * 6,
                   all_pass_groups=[0, 0, 0, 4, 4, 4],
                   train_reward_mean=[0.2, 0.4, 0.6, 1.0, 1.0, 1.0])
    assert check_no_signal(learned, S, FACTS) is None  # learned its way there: success
    history = rows(zero_variance_groups=[3] * 5, groups=[4] * 5)  # 75% < 90%
    assert check_no_signal(history, S, FACTS) is None


def test_truncation_that_costs_reward_warns():
    # 64 samples a step, half cut: pooled over 3 steps 96 cut and 96 finished samples, so
    # chance allows sqrt(1/96 + 1/96) = 0.144; cut samples score 0.2 against 0.6
    history = rows(truncated_fraction=[0.1, 0.5, 0.5, 0.5], completion_tokens_mean=[16] * 4,
                   truncated_reward_mean=[0.2] * 4, finished_reward_mean=[0.6] * 4,
                   samples=[64] * 4)
    finding = check_truncation(history, S, FACTS)
    assert finding.severity == "warn" and finding.step == 2
    assert finding.numbers["truncated_reward_mean"] == pytest.approx(0.2)
    assert finding.numbers["truncated_fraction"] == pytest.approx(0.5)
    assert "max_tokens=16" in finding.message and "0.20 on average against 0.60" in finding.message
    # everything cut and scoring nothing (0.01 <= 1% of the range); 0.04 is a low pass rate
    nothing = rows(truncated_fraction=[1.0] * 3, truncated_reward_mean=[0.01] * 3)
    assert check_truncation(nothing, S, FACTS) is not None
    low = rows(truncated_fraction=[1.0] * 3, truncated_reward_mean=[0.04] * 3)
    assert check_truncation(low, S, FACTS) is None
    below = rows(truncated_fraction=[0.29] * 5, truncated_reward_mean=[0.0] * 5)
    assert check_truncation(below, S, FACTS) is None


def test_harmless_truncation_is_quiet_and_reasoning_cuts_are_errors():
    # every sample cut, yet cut samples earn reward (the task needs no ending): no finding
    harmless = rows(truncated_fraction=[1.0] * 5, truncated_reward_mean=[0.3] * 5)
    assert check_truncation(harmless, S, FACTS) is None
    alike = rows(truncated_fraction=[0.5] * 5, truncated_reward_mean=[0.55] * 5,
                 finished_reward_mean=[0.6] * 5, samples=[64] * 5)  # 0.05 < 0.144
    assert check_truncation(alike, S, FACTS) is None
    # 0.2 less, on 8 samples a step: 12 cut and 12 finished, chance allows
    # sqrt(1/12 + 1/12) = 0.41; on 64 a step it is a finding
    small = rows(truncated_fraction=[0.5] * 3, truncated_reward_mean=[0.3] * 3,
                 finished_reward_mean=[0.5] * 3, samples=[8] * 3)
    assert check_truncation(small, S, FACTS) is None
    large = [{**row, "samples": 64} for row in small]
    assert check_truncation(large, S, FACTS) is not None
    # pooled means weigh steps by their cut samples: (1.0 * 32 + 0 * 48 + 0 * 48) / 128
    mixed = rows(truncated_fraction=[0.5, 0.75, 0.75], truncated_reward_mean=[1.0, 0, 0],
                 finished_reward_mean=[1.0, 1.0, 1.0], samples=[64] * 3)
    assert check_truncation(mixed, S, FACTS).numbers["truncated_reward_mean"] == 0.25
    inside = rows(truncated_fraction=[0.5] * 3, truncated_in_reasoning_fraction=[0.4] * 3,
                  truncated_reward_mean=[0.3] * 3)
    finding = check_truncation(inside, S, FACTS)
    assert finding.severity == "error" and "inside their reasoning" in finding.message


def test_length_drift_compares_the_first_step_with_the_last_window():
    grew = rows(completion_tokens_mean=[10, 10, 10, 25, 25, 25], train_reward_mean=[0.1] * 6)
    finding = check_length_drift(grew, S, FACTS)
    assert finding.step == 4 and finding.numbers["ratio"] == pytest.approx(2.5)
    assert "grew from 10 to 25" in finding.message
    shrank = rows(completion_tokens_mean=[10, 10, 10, 4, 4, 4], train_reward_mean=[0.1] * 6)
    assert "shrank" in check_length_drift(shrank, S, FACTS).message
    # (10+10+26)/3 = 15.3: 1.5x is not drift; (10+25+25)/3 = 20: 2x is not either
    assert check_length_drift(rows(completion_tokens_mean=[10] * 5 + [26],
                                   train_reward_mean=[0] * 6), S, FACTS) is None
    assert check_length_drift(grew[:5], S, FACTS) is None
    # a fast drift: the first step is the baseline, not a window that includes the drift
    fast = rows(completion_tokens_mean=[3, 20, 24, 24], train_reward_mean=[0.1] * 4)
    finding = check_length_drift(fast, S, FACTS)
    assert finding.numbers["ratio"] == pytest.approx((20 + 24 + 24) / 3 / 3)
    assert check_length_drift(fast[:3], S, FACTS) is None  # needs patience steps after step 1


def test_entropy_collapse_needs_a_reward_plateau_below_the_maximum():
    entropy = [2, 2, 2, 2, 2, 2, 0.3, 0.3, 0.3]
    finding = check_entropy_collapse(rows(entropy=entropy, train_reward_mean=[0.3] * 9), S, FACTS)
    assert finding.step == 7 and finding.numbers["entropy_now"] == pytest.approx(0.3)
    falling = [0.6] * 6 + [0.4] * 3  # reward falling is not improving either
    assert check_entropy_collapse(rows(entropy=entropy, train_reward_mean=falling), S,
                                  FACTS) is not None
    rising = [0.3] * 6 + [0.5, 0.6, 0.7]  # still learning: certainty is fine
    assert check_entropy_collapse(rows(entropy=entropy, train_reward_mean=rising), S,
                                  FACTS) is None
    solved = [0.97] * 9  # solved the task: certainty is expected
    assert check_entropy_collapse(rows(entropy=entropy, train_reward_mean=solved), S,
                                  FACTS) is None
    kept = [2, 2, 2, 2, 2, 2, 0.5, 0.5, 0.5]  # 25% of its start > 20%
    assert check_entropy_collapse(rows(entropy=kept, train_reward_mean=[0.3] * 9), S,
                                  FACTS) is None


def test_kl_ratio_and_non_finite_blow_ups():
    assert check_kl_blowup(rows(kl=[0.01, 1.5]), S, FACTS).severity == "error"
    clipped = check_kl_blowup(rows(kl=[0.0], clip_fraction=[0.4]), S, FACTS)
    assert clipped.severity == "warn" and "40% of tokens" in clipped.message
    assert "expert.num_iterations" in clipped.message
    stale = check_kl_blowup(rows(kl=[0.0], clip_fraction=[0.4], staleness=[1]), S, FACTS)
    assert "in the 1 update since the batch was sampled" in stale.message
    assert "expert.max_staleness" in stale.message
    broken = check_kl_blowup(rows(loss=[math.nan], grad_norm=[1.0]), S, FACTS)
    assert broken.severity == "error" and "loss" in broken.message
    assert check_kl_blowup(rows(kl=[0.9], clip_fraction=[0.29], loss=[0.1]), S, FACTS) is None


def test_noise_band_is_twice_the_worst_standard_error_of_a_difference():
    assert noise_band(FACTS, 4) == pytest.approx(2 * math.sqrt(2 * 0.5**2 / 4))
    assert noise_band(RunFacts(4, 16, 1.0, 7.0, 0.0, 1), 32) == pytest.approx(
        2 * math.sqrt(2 * 3.0**2 / 32))


def test_overfitting_train_up_while_validation_falls():
    train = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    # validation at steps 2, 4, 6: fitted change -0.2 over steps 2..6; train +0.4
    falling = rows(train_reward_mean=train, valid_reward_mean=[None, 0.6, None, 0.5, None, 0.4],
                   samples=[200] * 6)
    finding = check_overfitting(falling, S, FACTS)
    assert finding.step == 2
    assert finding.numbers["train_reward_change"] == pytest.approx(0.4)
    assert finding.numbers["valid_reward_change"] == pytest.approx(-0.2)
    flat = rows(train_reward_mean=train, valid_reward_mean=[None, 0.6, None, 0.55, None, 0.52],
                samples=[200] * 6)
    assert check_overfitting(flat, S, FACTS) is None  # -0.08 is less than overfit_delta
    assert check_overfitting(falling[:4], S, FACTS) is None  # two validations only
    # the same curves measured on 4 validation samples (band 0.71) are within chance
    few = RunFacts(4, 16, 0.0, 1.0, 0.0, 1, eval_samples=4)
    assert check_overfitting(falling, S, few) is None


def test_reward_near_max_while_validation_lags():
    lagging = rows(train_reward_mean=[0.5, 0.98, 0.97, 0.99],
                   valid_reward_mean=[None, None, None, 0.5])
    finding = check_reward_near_max(lagging, S, FACTS)
    assert finding.step == 2 and finding.numbers["valid_reward"] == 0.5
    close = rows(train_reward_mean=[0.98] * 3, valid_reward_mean=[None, None, 0.8])
    assert check_reward_near_max(close, S, FACTS) is None
    score_model = RunFacts(4, 16, 1.0, 7.0, 0.0, 1, 200)  # range [1, 7]: 6.8 is 97% of the way
    high = rows(train_reward_mean=[6.8] * 3, valid_reward_mean=[None, None, 4.0])
    assert check_reward_near_max(high, S, score_model) is not None
    assert check_reward_near_max(rows(train_reward_mean=[0.99] * 3), S, FACTS) is None


def test_grader_and_parse_error_shares():
    history = rows(samples=[8] * 4, grader_errors=[0, 2, 2, 3], sample_parse_errors=[0] * 4,
                   grader_error_codes=[{}] + [{"python_grader_runtime_error": 2}] * 3)
    finding = check_grader_errors(history, S, FACTS)
    assert finding.step == 2 and finding.numbers["grader_error_share"] == pytest.approx(7 / 24)
    assert finding.numbers["python_grader_runtime_error"] == 6
    assert "at step 1: 0%" in finding.message
    parse = rows(samples=[8] * 3, grader_errors=[2] * 3, sample_parse_errors=[2] * 3)
    finding = check_grader_errors(parse, S, FACTS)
    assert finding.numbers["grader_error_share"] == 0 and "did not parse" in finding.message
    assert check_grader_errors(rows(samples=[20] * 5, grader_errors=[1] * 5), S, FACTS) is None


def test_one_sub_grader_dominating():
    shares = [{"len": 0.5, "ok": 0.5}] + [{"len": 0.95, "ok": 0.05}] * 3
    finding = check_grader_dominance(rows(sub_reward_signal_share=shares), S, FACTS)
    assert finding.step == 2 and "'len'" in finding.message
    assert finding.numbers == pytest.approx({"share_len": 0.95, "share_ok": 0.05})
    balanced = [{"len": 0.6, "ok": 0.4}] * 5
    assert check_grader_dominance(rows(sub_reward_signal_share=balanced), S, FACTS) is None


# -- the monitor ------------------------------------------------------------------------------


def _no_signal_rows(n: int) -> list[dict]:
    return rows(zero_variance_groups=[4] * n, groups=[4] * n, all_fail_groups=[4] * n)


def test_each_finding_fires_once_at_the_step_it_is_detected():
    monitor = TrainingMonitor(S, FACTS)
    fired = [monitor.observe(row) for row in _no_signal_rows(6)]
    assert [len(f) for f in fired] == [0, 0, 1, 0, 0, 0]
    finding = fired[2][0]
    assert finding.detected_step == 3 and finding.step == 1 and finding.action == "warn"
    assert [f.kind for f in monitor.findings] == ["no_signal"]


@pytest.mark.parametrize(("action", "severity", "text"),
                         [("pause", "warn", "paused itself"), ("fail", "error", "failed")])
def test_no_signal_actions(action, severity, text):
    monitor = TrainingMonitor(MonitorSettings(on_no_signal=action), FACTS)
    finding = [f for row in _no_signal_rows(3) for f in monitor.observe(row)][0]
    assert finding.action == action and finding.severity == severity and text in finding.message


def test_actions_by_kind_and_their_validation():
    settings = MonitorSettings(actions={"truncation": "pause", "no_signal": "fail"})
    monitor = TrainingMonitor(settings, FACTS)
    cut = rows(truncated_fraction=[1.0] * 3, truncated_reward_mean=[0.0] * 3,
               zero_variance_groups=[4] * 3, groups=[4] * 3, all_fail_groups=[4] * 3)
    found = {f.kind: f for row in cut for f in monitor.observe(row)}
    assert found["truncation"].action == "pause"
    assert "expert.monitor.actions.truncation: pause" in found["truncation"].message
    assert found["no_signal"].action == "fail"  # `actions` wins over on_no_signal
    with pytest.raises(ValueError, match="trunkation"):
        MonitorSettings(actions={"trunkation": "pause"})


def test_disabled_monitor_and_silent_replay():
    off = TrainingMonitor(MonitorSettings(enabled=False), FACTS)
    assert [f for row in _no_signal_rows(5) for f in off.observe(row)] == []
    resumed = TrainingMonitor(MonitorSettings(on_no_signal="pause"), FACTS)
    resumed.replay(_no_signal_rows(4))  # the run paused at step 3, resumed after step 4
    assert [f.kind for f in resumed.findings] == ["no_signal"]
    assert resumed.observe(_no_signal_rows(5)[-1]) == []  # does not pause it again


def test_monitor_settings_live_under_expert_and_preflight_auto_is_resolved():
    base = {"model": "m", "training_file": "t.jsonl", "grader": {
        "type": "string_check", "name": "g", "input": "{{ sample.output_text }}",
        "reference": "x", "operation": "eq"}}
    config = config_from_dict({**base, "expert": {"monitor": {"patience": 5,
                                                              "on_no_signal": "pause"}}})
    cfg = resolve(config, 100)
    assert cfg.monitor.patience == 5 and cfg.monitor.on_no_signal == "pause"
    assert cfg.monitor.no_signal_share == 0.9  # the other defaults kept
    # 100 rows, batch 8: 13 steps x 2 epochs (auto: >= 20 steps) = 26 steps, 208 prompts
    # sampled < 10 x 32 preflight rows: off. 4 epochs: 52 x 8 = 416 >= 320: on.
    assert cfg.total_steps == 26 and cfg.preflight is False
    four = config_from_dict({**base, "hyperparameters": {"n_epochs": 4}})
    assert resolve(four, 100).preflight is True
    # 10 rows: preflight samples all 10; 20 steps x batch 8 (auto) = 160 >= 100: on
    assert resolve(config, 10).preflight is True
    assert resolve(config_from_dict({**base, "expert": {"preflight": False}}), 10).preflight \
        is False
    with pytest.raises(Exception, match="expert.monitor.patiense"):
        config_from_dict({**base, "expert": {"monitor": {"patiense": 2}}})
    with pytest.raises(Exception, match="expert.monitor.on_no_signal"):
        config_from_dict({**base, "expert": {"monitor": {"on_no_signal": "stop"}}})


def test_run_facts_take_the_reward_scale_from_the_grader_or_the_settings():
    judge = {"type": "score_model", "name": "judge", "model": "judge-model", "range": [1, 7],
             "input": [{"role": "user", "content": "Answer: {{ sample.output_text }}"}]}
    base = {"model": "m", "training_file": "t.jsonl", "grader": judge,
            "hyperparameters": {"eval_samples": 5}}
    facts = run_facts(resolve(config_from_dict(base), 10, 8))
    assert (facts.reward_floor, facts.reward_max, facts.eval_samples) == (1.0, 7.0, 5)
    custom = {**base, "expert": {"monitor": {"reward_max": 5.0}}}
    assert run_facts(resolve(config_from_dict(custom), 10, 8)).reward_max == 5.0
