"""The training-health checks: pure functions of the metrics history, one per kind of
finding. Each reads the metrics.jsonl rows so far (plus rl/health_metrics.py's numbers),
the `expert.monitor` thresholds and a few facts about the run, and returns a `Finding`
(what happens, why it matters, what to change) or None. rl/monitor.py runs them every
step; docs/training_health.md explains each finding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from openrft.rl.monitor_settings import FindingKind, MonitorAction, MonitorSettings

Severity = Literal["warn", "error"]
Metrics = dict[str, Any]


@dataclass(frozen=True)
class Finding:
    """One health problem, as a person should read it."""

    kind: FindingKind  # no_signal, truncation, length_drift, entropy_collapse, ...
    severity: Severity
    message: str  # what happens, why it matters, what to change
    numbers: Mapping[str, float | None] = field(default_factory=dict)  # None: not measured
    step: int = 0  # the step where the condition began
    detected_step: int = 0  # the step where it had held long enough to report
    action: MonitorAction = "warn"  # what the trainer does about it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunFacts:
    """What the checks need to know about the run besides its metrics."""

    group_size: int
    max_tokens: int
    reward_floor: float  # "scored nothing"
    reward_max: float  # top of the reward scale
    beta: float
    num_iterations: int
    eval_samples: int = 0  # validation samples per periodic validation


Check = Callable[[list[Metrics], MonitorSettings, RunFacts], "Finding | None"]


def _num(row: Metrics, key: str, default: float = 0.0) -> float:
    value = row.get(key)
    return float(value) if isinstance(value, int | float) else default


def _streak(history: list[Metrics], holds: Callable[[Metrics], bool]) -> list[Metrics]:
    """The trailing run of steps where `holds` is true (oldest first)."""
    run: list[Metrics] = []
    for row in reversed(history):
        if not holds(row):
            break
        run.append(row)
    return run[::-1]


def _mean(rows: Sequence[Metrics], key: str) -> float:
    return sum(_num(r, key) for r in rows) / max(len(rows), 1)


def _zero_variance_share(row: Metrics) -> float:
    return _num(row, "zero_variance_groups") / max(_num(row, "groups", 1.0), 1.0)


def check_no_signal(history: list[Metrics], s: MonitorSettings, f: RunFacts) -> Finding | None:
    run = _streak(history, lambda r: _zero_variance_share(r) >= s.no_signal_share)
    if len(run) < s.patience:
        return None
    groups = sum(_num(r, "groups") for r in run)
    flat = sum(_num(r, "zero_variance_groups") for r in run)
    fail, passed = sum(_num(r, "all_fail_groups") for r in run), sum(
        _num(r, "all_pass_groups") for r in run)
    numbers = {"zero_variance_share": flat / max(groups, 1), "steps": len(run),
               "all_fail_groups": fail, "all_pass_groups": passed, "groups": groups}
    head = (f"No learning signal: for {len(run)} steps {flat / max(groups, 1):.0%} of groups "
            f"gave all {f.group_size} samples the same reward, so every advantage is 0 "
            "and the model learns nothing.")
    if fail >= passed and fail >= flat / 2:
        advice = (f" In {fail:.0f} of {groups:.0f} groups every sample scored the minimum "
                  f"({f.reward_floor:g}): the task is too hard for the model as it is. Give "
                  "partial credit (text_similarity, a python grader scoring closeness), check "
                  "the prompt states the answer format the grader expects, or fine-tune on "
                  "demonstrations first; `openrft preflight` measures the pass rate.")
    elif _near_max(_mean(run, "train_reward_mean"), f, s):
        if not _near_max(_mean(history[: s.patience], "train_reward_mean"), f, s):
            return None  # learned its way to full marks: success, not a missing signal
        advice = (f" In {passed:.0f} of {groups:.0f} groups every sample passed: the model "
                  "already solves these prompts. Stop here if validation is good, or use "
                  "harder rows or a stricter grader.")
    else:
        advice = (f" The groups agree without all failing ({fail:.0f} all-fail, {passed:.0f} "
                  f"all-pass of {groups:.0f}; entropy {_mean(run, 'entropy'):.3f}): the "
                  "model samples (nearly) the same completion every time. Raise "
                  "expert.temperature or hyperparameters.compute_multiplier (bigger groups), "
                  "lower the learning rate if entropy collapsed, and prefer a graded reward "
                  "to a pass/fail one.")
    return Finding("no_signal", "warn", head + advice, numbers, int(run[0]["step"]))


def _pooled(rows: Sequence[Metrics], key: str, share: Callable[[Metrics], float]
            ) -> tuple[float | None, float]:
    """(mean of `key` weighted by each step's share of samples, number of those samples)."""
    weights = [(share(r) * _num(r, "samples", 1.0), _num(r, key)) for r in rows
               if isinstance(r.get(key), int | float)]
    n = sum(w for w, _ in weights if w > 0)
    return (sum(w * v for w, v in weights if w > 0) / n if n else None), n


def check_truncation(history: list[Metrics], s: MonitorSettings, f: RunFacts) -> Finding | None:
    """Many samples hit max_tokens for `patience` steps and, pooled over those steps, the cut
    costs reward: cut inside reasoning, scoring the minimum (within 1% of the range), or
    scoring less than the finished samples by more than truncation_penalty and chance."""
    run = _streak(history, lambda r: _num(r, "truncated_fraction") >= s.truncation_share)
    if len(run) < s.patience:
        return None
    window = run[-s.patience :]
    share, inside = _mean(window, "truncated_fraction"), _mean(
        window, "truncated_in_reasoning_fraction")
    cut, n_cut = _pooled(window, "truncated_reward_mean", lambda r: _num(r, "truncated_fraction"))
    done, n_done = _pooled(window, "finished_reward_mean",
                           lambda r: 1 - _num(r, "truncated_fraction"))
    span = f.reward_max - f.reward_floor
    in_reasoning = inside >= s.truncation_share / 2
    worthless = cut is not None and cut <= f.reward_floor + 0.01 * span  # ~all at the floor
    penalty = max(s.truncation_penalty * span,
                  span * math.sqrt(1 / max(n_cut, 1) + 1 / max(n_done, 1)))
    worse = cut is not None and done is not None and cut <= done - penalty
    if not (in_reasoning or worthless or worse):
        return None
    numbers = {"truncated_fraction": share, "truncated_in_reasoning_fraction": inside,
               "max_tokens": f.max_tokens,
               "completion_tokens_mean": _mean(window, "completion_tokens_mean"),
               "truncated_reward_mean": cut, "finished_reward_mean": done}
    message = (f"Truncation: {share:.0%} of samples hit max_tokens={f.max_tokens} over "
               f"{len(run)} steps (mean length {numbers['completion_tokens_mean']:.0f} tokens)")
    if cut is not None:
        message += f", and cut samples score {cut:.2f} on average"
        message += f" against {done:.2f} for finished ones." if done is not None else "."
    severity: Severity = "warn"
    if in_reasoning:
        severity = "error"
        message += (f" {inside:.0%} were cut inside their reasoning, so they have no answer and "
                    "score the minimum whatever they reasoned.")
    message += (" Raise expert.max_tokens (a cut answer is graded as written) or lower "
                "hyperparameters.reasoning_effort.")
    return Finding("truncation", severity, message, numbers, int(run[0]["step"]))


def check_length_drift(history: list[Metrics], s: MonitorSettings, f: RunFacts) -> Finding | None:
    if len(history) <= s.patience:
        return None
    recent = history[-s.patience :]  # compared with the first step: the base policy
    start, now = _num(history[0], "completion_tokens_mean"), _mean(recent,
                                                                  "completion_tokens_mean")
    if start <= 0 or not (now >= start * s.length_drift_ratio or
                          now * s.length_drift_ratio <= start):
        return None
    reward_start, reward_now = _num(history[0], "train_reward_mean"), _mean(recent,
                                                                           "train_reward_mean")
    numbers = {"completion_tokens_start": start, "completion_tokens_now": now,
               "ratio": now / start, "train_reward_start": reward_start,
               "train_reward_now": reward_now}
    if now > start:
        message = (f"Length drift: completions grew from {start:.0f} to {now:.0f} tokens on "
                   f"average ({now / start:.1f}x) while the train reward went from "
                   f"{reward_start:.2f} to {reward_now:.2f}. If the grader favours longer "
                   "answers the model is learning length, not the task: read samples.jsonl, "
                   "make the grader length-neutral (or add a length penalty in a multi "
                   "grader), or cap expert.max_tokens.")
    else:
        message = (f"Length drift: completions shrank from {start:.0f} to {now:.0f} tokens on "
                   f"average while the train reward went from {reward_start:.2f} to "
                   f"{reward_now:.2f}. Check samples.jsonl for empty or clipped answers that "
                   "score better than wrong ones, and make the grader give them the minimum.")
    return Finding("length_drift", "warn", message, numbers, int(recent[0]["step"]))


def _near_max(reward: float, f: RunFacts, s: MonitorSettings) -> bool:
    span = f.reward_max - f.reward_floor
    return span > 0 and (reward - f.reward_floor) >= s.near_max_fraction * span


def check_entropy_collapse(history: list[Metrics], s: MonitorSettings,
                           f: RunFacts) -> Finding | None:
    if len(history) < 2 * s.patience:
        return None
    recent, previous = history[-s.patience :], history[-2 * s.patience : -s.patience]
    start, now = _num(history[0], "entropy"), _mean(recent, "entropy")
    reward_before, reward_now = (_mean(w, "train_reward_mean") for w in (previous, recent))
    collapsed = start > 0 and now < s.entropy_collapse_fraction * start
    plateau = reward_now - reward_before <= s.plateau_delta  # not improving (or falling)
    if not (collapsed and plateau) or _near_max(reward_now, f, s):
        return None  # a model that solves the task may well be certain
    numbers = {"entropy_start": start, "entropy_now": now, "train_reward_before": reward_before,
               "train_reward_now": reward_now}
    message = (f"Entropy collapse: policy entropy fell from {start:.3f} to {now:.3f} per token "
               f"({now / start:.1%} of its start) while the train reward stalled at "
               f"{reward_now:.2f}. The model samples nearly the same completion every time, "
               "so groups stop differing and learning stops. Lower the learning rate "
               "(hyperparameters.learning_rate_multiplier), set expert.beta (e.g. 0.04) to "
               "anchor to the base model, or raise expert.temperature / epsilon_high.")
    return Finding("entropy_collapse", "warn", message, numbers, int(recent[0]["step"]))


def check_kl_blowup(history: list[Metrics], s: MonitorSettings, f: RunFacts) -> Finding | None:
    row = history[-1]
    values = {k: row.get(k) for k in ("loss", "grad_norm", "kl", "entropy")}
    broken = [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
    step = int(row["step"])
    if broken:
        return Finding("kl_blowup", "error",
                       f"Divergence: {', '.join(broken)} became non-finite at step {step}. "
                       "Lower the learning rate, use expert.precision: bf16 instead of fp16 "
                       "(no loss scaling), and keep expert.max_grad_norm at 1.0 or below.",
                       {k: None for k in broken}, step)
    kl, clip = _num(row, "kl"), _num(row, "clip_fraction")
    if kl >= s.kl_max:
        return Finding("kl_blowup", "error",
                       f"KL blow-up: the per-token KL to the reference reached {kl:.3f} "
                       f"(threshold {s.kl_max:g}) at step {step}; the policy is drifting far "
                       "from the base model, which usually precedes gibberish or reward "
                       "hacking. Lower the learning rate or raise expert.beta.",
                       {"kl": kl, "beta": f.beta}, step)
    if clip >= s.clip_fraction_max:
        staleness = int(_num(row, "staleness"))
        cause = (f"each of the {f.num_iterations} updates per batch moves the policy too far. "
                 "Lower the learning rate or expert.num_iterations.")
        if staleness:  # the async mode: the batch was sampled `staleness` updates ago
            updates = f"{staleness} update{'s' if staleness > 1 else ''}"
            cause = (f"the policy moved too far in the {updates} since the batch was "
                     "sampled. Lower the learning rate or expert.max_staleness.")
        return Finding("kl_blowup", "warn",
                       f"Importance-ratio blow-up: {clip:.0%} of tokens had their ratio "
                       f"clipped at step {step} (threshold {s.clip_fraction_max:.0%}): {cause}",
                       {"clip_fraction": clip, "num_iterations": f.num_iterations,
                        "staleness": staleness}, step)
    return None


def _fitted_change(points: list[tuple[float, float]]) -> float:
    """Least-squares slope times the step span: the trend's change, robust to one noisy end."""
    n = len(points)
    mx, my = sum(p[0] for p in points) / n, sum(p[1] for p in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope * (points[-1][0] - points[0][0])


def noise_band(f: RunFacts, n: float) -> float:
    """Twice the largest standard error of a difference of two means of `n` rewards in the
    run's range (a reward's std is at most half the range): smaller moves may be chance."""
    return math.sqrt(2) * (f.reward_max - f.reward_floor) / math.sqrt(max(n, 1))


def _validations(history: list[Metrics]) -> list[tuple[float, float]]:
    return [(float(r["step"]), float(r["valid_reward_mean"])) for r in history
            if isinstance(r.get("valid_reward_mean"), int | float)]


def check_overfitting(history: list[Metrics], s: MonitorSettings, f: RunFacts) -> Finding | None:
    valid = _validations(history)[-s.overfit_points :]
    if len(valid) < s.overfit_points:
        return None
    first, last = valid[0][0], valid[-1][0]
    train = [(float(r["step"]), _num(r, "train_reward_mean")) for r in history
             if first <= r["step"] <= last]
    train_change, valid_change = _fitted_change(train), _fitted_change(valid)
    train_band = max(s.overfit_delta, noise_band(f, _mean(history[-1:], "samples")))
    valid_band = max(s.overfit_delta, noise_band(f, f.eval_samples))
    if train_change < train_band or valid_change > -valid_band:
        return None
    numbers = {"train_reward_change": train_change, "valid_reward_change": valid_change,
               "from_step": first, "to_step": last, "valid_noise_band": valid_band}
    message = (f"Overfitting or reward hacking: between steps {first:.0f} and {last:.0f} the "
               f"train reward rose by {train_change:+.2f} while the validation reward fell by "
               f"{-valid_change:.2f}. The model is fitting the training prompts or exploiting "
               "the grader. Use the checkpoint with the best validation reward, lower "
               "n_epochs or learning_rate_multiplier, add training rows, and read "
               "high-scoring samples for grader loopholes.")
    return Finding("overfitting", "warn", message, numbers, int(first))


def check_reward_near_max(history: list[Metrics], s: MonitorSettings,
                          f: RunFacts) -> Finding | None:
    valid = _validations(history)
    if not valid or len(history) < s.patience:
        return None
    recent = history[-s.patience :]
    train = _mean(recent, "train_reward_mean")
    gap = max(s.valid_gap, noise_band(f, f.eval_samples))
    if not _near_max(train, f, s) or valid[-1][1] > train - gap:
        return None
    numbers = {"train_reward": train, "valid_reward": valid[-1][1], "reward_max": f.reward_max}
    message = (f"Reward near its maximum: the train reward is {train:.2f} of {f.reward_max:g} "
               f"over the last {s.patience} steps but validation is only {valid[-1][1]:.2f}. "
               "Perfect training scores that do not carry over suggest memorised prompts or a "
               "grader loophole: read the top samples in samples.jsonl, tighten the grader, "
               "and keep the checkpoint with the best validation reward.")
    return Finding("reward_near_max", "warn", message, numbers, int(recent[0]["step"]))


def _error_shares(row: Metrics) -> tuple[float, float]:
    """(grader-error share, parse-error share); parse errors also count as grader errors."""
    n = max(_num(row, "samples", 1.0), 1.0)
    parse = _num(row, "sample_parse_errors")
    return (_num(row, "grader_errors") - parse) / n, parse / n


def check_grader_errors(history: list[Metrics], s: MonitorSettings,
                        f: RunFacts) -> Finding | None:
    run = _streak(history, lambda r: max(_error_shares(r)) >= s.error_share)
    if len(run) < s.patience:
        return None
    grader = sum(_error_shares(r)[0] for r in run) / len(run)
    parse = sum(_error_shares(r)[1] for r in run) / len(run)
    first_grader, first_parse = _error_shares(history[0])
    codes: dict[str, float] = {}
    for row in run:
        for code, count in (row.get("grader_error_codes") or {}).items():
            if code != "sample_parse_error":
                codes[code] = codes.get(code, 0) + count
    numbers = {"grader_error_share": grader, "parse_error_share": parse,
               "grader_error_share_at_start": first_grader,
               "parse_error_share_at_start": first_parse, **codes}
    parts = []
    if grader >= s.error_share:
        listed = ", ".join(f"{c}: {n:.0f}" for c, n in sorted(codes.items()))
        parts.append(f"the grader failed on {grader:.0%} of samples (at step 1: "
                     f"{first_grader:.0%}; {listed}); failed samples score 0. Run `openrft "
                     "grade` on a few samples to fix the grader (timeouts, crashes, a judge "
                     "that cannot be reached).")
    if parse >= s.error_share:
        parts.append(f"{parse:.0%} of outputs did not parse as the response_format (at step "
                     f"1: {first_parse:.0%}); describe the JSON format in the prompt, raise "
                     "max_tokens if answers are cut, or fine-tune on valid examples first.")
    return Finding("grader_errors", "warn", f"Grader errors over {len(run)} steps: "
                   + " Also, ".join(parts), numbers, int(run[0]["step"]))


def _dominant(row: Metrics, share: float) -> str | None:
    shares = row.get("sub_reward_signal_share") or {}
    if len(shares) < 2:
        return None
    key = max(shares, key=lambda k: shares[k])
    return key if shares[key] >= share else None


def check_grader_dominance(history: list[Metrics], s: MonitorSettings,
                           f: RunFacts) -> Finding | None:
    key = _dominant(history[-1], s.dominance_share)
    if key is None:
        return None
    run = _streak(history, lambda r: _dominant(r, s.dominance_share) == key)
    if len(run) < s.patience:
        return None
    shares = {k: sum(_num(r.get("sub_reward_signal_share") or {}, k) for r in run) / len(run)
              for k in history[-1]["sub_reward_signal_share"]}
    others = ", ".join(f"{k} {v:.0%}" for k, v in shares.items() if k != key)
    message = (f"One grader dominates: over {len(run)} steps {shares[key]:.0%} of the reward "
               f"differences within groups followed the multi grader's '{key}' part "
               f"(others: {others}). The model learns what '{key}' rewards and little else. "
               "Reweight calculate_output, scale the parts to comparable ranges, or check "
               f"that '{key}' cannot be satisfied by a shortcut.")
    return Finding("grader_dominance", "warn", message, {f"share_{k}": v for k, v in
                                                         shares.items()}, int(run[0]["step"]))


CHECKS: tuple[Check, ...] = (
    check_no_signal, check_truncation, check_length_drift, check_entropy_collapse,
    check_kl_blowup, check_overfitting, check_reward_near_max, check_grader_errors,
    check_grader_dominance,
)
