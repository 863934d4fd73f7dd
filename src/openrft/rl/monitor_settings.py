"""`expert.monitor`: the thresholds and actions of the training-health monitor, apart from
the monitor (rl/monitor.py) so the config (rl/config.py) can hold them without importing
the checks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from openrft.strict_model import StrictModel

MonitorAction = Literal["warn", "pause", "fail"]
FindingKind = Literal[
    "no_signal", "truncation", "length_drift", "entropy_collapse", "kl_blowup", "overfitting",
    "reward_near_max", "grader_errors", "grader_dominance",
]


class MonitorSettings(StrictModel):
    """Thresholds of the training-health monitor (rl/monitor.py, docs/training_health.md).
    Findings are alerts: they never change the reward."""

    enabled: bool = True
    """Watch every step's metrics and report findings as warn/error events."""
    patience: int = Field(default=3, ge=1)
    """Consecutive steps a per-step condition must hold before its finding fires (no
    signal, truncation, grader errors, dominance); also the window that length, entropy
    and reward trends average over."""
    no_signal_share: float = Field(default=0.9, gt=0, le=1)
    """Share of groups whose samples all got the same reward (zero advantage)."""
    on_no_signal: MonitorAction = "warn"
    """What a no-signal finding does: warn (event only), pause (checkpoint and pause the
    run, as `POST .../pause` does) or fail (stop the run as failed)."""
    actions: dict[FindingKind, MonitorAction] = Field(default_factory=dict)
    """The same choice for any finding, by kind (e.g. {truncation: pause}); a kind not
    listed warns (no_signal: on_no_signal)."""
    truncation_share: float = Field(default=0.3, gt=0, le=1)
    """Share of samples that hit max_tokens (counted when the cut costs reward: see
    truncation_penalty)."""
    truncation_penalty: float = Field(default=0.1, ge=0)
    """How much less (as a share of the reward range) cut samples must score than finished
    ones, pooled over patience steps, and never less than chance allows; cut samples
    scoring about the minimum, or cut inside reasoning, always count."""
    length_drift_ratio: float = Field(default=2.5, gt=1)
    """Mean completion length this many times longer (or shorter) than at the start."""
    entropy_collapse_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Entropy below this fraction of its start while the reward has stopped improving."""
    plateau_delta: float = Field(default=0.05, ge=0)
    """Largest rise of the mean train reward between two patience windows that still
    counts as a plateau (a fall counts too)."""
    kl_max: float = Field(default=1.0, gt=0)
    """Mean per-token KL to the reference (only measured when beta > 0)."""
    clip_fraction_max: float = Field(default=0.3, gt=0, le=1)
    """Share of tokens whose importance ratio left the clip range (num_iterations > 1)."""
    overfit_points: int = Field(default=3, ge=2)
    """Validation runs the overfitting trend is fitted over."""
    overfit_delta: float = Field(default=0.1, gt=0)
    """Train reward rise and validation reward fall (fitted, over those runs) that count;
    never less than the sampling noise of the means compared (rl/health_checks.noise_band)."""
    near_max_fraction: float = Field(default=0.95, gt=0, le=1)
    """Train reward at this fraction of the grader's range counts as "at the maximum"."""
    valid_gap: float = Field(default=0.25, gt=0)
    """How far validation must lag a near-maximal train reward to be suspicious (never
    less than the sampling noise of eval_samples rewards)."""
    reward_max: float | None = None
    """Top of the reward scale. None: the top of a score_model's range, else 1.0."""
    error_share: float = Field(default=0.1, gt=0, le=1)
    """Share of samples with a grader error, or of structured outputs that did not parse."""
    dominance_share: float = Field(default=0.8, gt=0, le=1)
    """Share of the within-group reward variation one `multi` sub-grader explains."""
