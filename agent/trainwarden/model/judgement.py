"""What the judge says of a run: typed and frozen, built by `judge.judge()` from a snapshot, a policy, the time
and the GPUs, and never changed afterwards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from trainwarden.model.enums import Health, RunState, Severity


@dataclass(frozen=True, slots=True)
class Condition:
    """One active alert as the agent judges it: the same names, labels and texts as the Prometheus rule."""

    alert: str
    severity: Severity
    summary: str
    description: str
    runbook: str | None
    since: float | None
    run: str | None  # "" for a host-level condition such as a hot GPU
    labels: Mapping[str, str] = field(default_factory=dict)
    key: str = ""  # identifies the condition across evaluations (alert, run, labels); computed when not given
    hold_seconds: float = 0.0  # how long it must stay active before it pages (Prometheus' `for:`)

    def __post_init__(self) -> None:
        if not self.key:
            key = "|".join([self.alert, self.run or "", *(f"{k}={v}" for k, v in sorted(self.labels.items()))])
            object.__setattr__(self, "key", key)

    def for_run(self, run: str) -> Condition:
        """A host-level condition (a hot GPU) copied onto a run that uses it: the run's health counts it too."""
        return Condition(self.alert, self.severity, self.summary, self.description, self.runbook, self.since, run,
                         self.labels, f"{self.key}|run={run}", self.hold_seconds)


@dataclass(frozen=True, slots=True)
class LossTrend:
    short_mean: float
    long_mean: float
    rise_ratio: float | None
    mean_100: float
    slope_per_log: float
    falling: bool
    values: int


@dataclass(frozen=True, slots=True)
class LossHistory:
    """The run's own loss level before its latest logged loss: what an explosion is measured against."""

    points: int  # finite logged losses before the latest (the run's long-range history, thinned when long)
    median: float | None  # their median; None while fewer than the policy's minimum, or when a loss was <= 0
    minimum: float | None  # the lowest of them; None before the second logged loss


@dataclass(frozen=True, slots=True)
class PlanBCheck:
    condition: str
    met: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: str | None  # one of enums.VERDICTS, or None when there is nothing to judge
    rule: str
    advice: str
    reasons: tuple[str, ...] = ()
    plan_b: tuple[PlanBCheck, ...] = ()


@dataclass(frozen=True, slots=True)
class EarlyStopStory:
    counter: int | None
    patience: int | None
    threshold: float | None
    triggered: bool
    learning_rate: float | None
    misfire_hints: tuple[str, ...]
    recovery: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EvaluationTarget:
    """The target of one evaluation (aligned with the snapshot's `evaluations`) and whether it was met."""

    target: float | None
    met: bool | None


@dataclass(frozen=True, slots=True)
class BestEvaluation:
    key: str
    value: float | None
    epoch: int | None
    iteration: int | None
    checkpoint: str | None


@dataclass(frozen=True, slots=True)
class RunGpu:
    """A GPU the run's processes use, and how much of its memory they hold."""

    index: int
    uuid: str
    memory_used_bytes: int | None


@dataclass(frozen=True, slots=True)
class PolicyView:
    """The thresholds this run was judged by (exported so the Prometheus rules compare against the same)."""

    loss_max: float | None  # None: a setting that is off (its alert never fires, its series is not exported)
    loss_rise_ratio: float | None
    accuracy_min_ratio: float | None
    grad_norm_max: float | None
    gpu_temperature_max_celsius: float
    gpu_memory_full_ratio: float
    learning_rate_min: float | None
    stall_seconds: float
    evaluation_news_seconds: float
    goal: float | None
    recall_goal: float | None
    targets_apply: bool
    baselines: Mapping[str, float]
    loss_range: tuple[float, float] | None
    plan_label: str | None = None  # the run's plan ("Plan A"), shown beside its name
    loss_explosion_factor: float | None = None


@dataclass(frozen=True, slots=True)
class Judgement:
    state: RunState
    stall_seconds: float
    reached_end: bool
    eval_key: str | None
    targets_apply: bool
    targets: tuple[EvaluationTarget, ...]
    best: BestEvaluation | None
    loss_trend: LossTrend | None
    early_stop: EarlyStopStory | None
    verdict: Verdict
    conditions: tuple[Condition, ...]
    health: Health
    advice: str
    gpus: tuple[RunGpu, ...]
    policy: PolicyView
    history: bool = False  # quiet since long before the agent first saw it: shown, never paged
    loss_history: LossHistory | None = None


@dataclass(frozen=True, slots=True)
class HostJudgement:
    """The GPUs' own conditions and the thresholds they were judged by."""

    conditions: tuple[Condition, ...]
    gpu_temperature_max_celsius: float
    gpu_memory_full_ratio: float
