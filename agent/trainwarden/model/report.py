"""The status document as types: what `status --json` and `/api/runs` publish, one `RunReport` per run.

`outputs.status` builds reports from snapshots and judgements (the one place that decides the document's
content); `codec.to_plain` turns them into JSON-ready data and `codec.from_plain` reads an agent's document back
(`status http://gpu-host:9841`), so the metrics, the views and the notifier read the same types whether a run is
local or remote. docs/contracts/status-document.md describes every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trainwarden.model.enums import Health, RunState
from trainwarden.model.judgement import (
    BestEvaluation,
    Condition,
    EarlyStopStory,
    LossHistory,
    LossTrend,
    PlanBCheck,
    PolicyView,
    RunGpu,
)
from trainwarden.model.snapshot import (
    Attempt,
    Checkpoint,
    EarlyStopping,
    ErrorEvent,
    GpuSample,
    ProcessInfo,
    Resume,
    SavedCheckpoint,
)


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    mode: str
    epoch: int | None
    iteration: int | None
    metrics: Mapping[str, float | None]  # None: the log wrote nan/inf
    timestamp: float | None
    target: float | None
    met: bool | None

    def value(self, key: str | None) -> float | None:
        return self.metrics.get(key) if key else None


@dataclass(frozen=True, slots=True)
class LogReport:
    lines_total: int = 0
    parse_errors_total: int = 0
    decode_fallbacks_total: int = 0
    errors_total: Mapping[str, int] = field(default_factory=dict)
    file_events_total: Mapping[str, int] = field(default_factory=dict)
    recent_errors: tuple[ErrorEvent, ...] = ()
    last_error_timestamps: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunReport:
    run: str
    work_dir: str
    framework: str = "unknown"
    config: str | None = None
    state: RunState = RunState.UNKNOWN
    history: bool = False  # quiet for longer than `history_after_seconds` when first seen: never notified, never red
    epoch: int | None = None
    max_epochs: int | None = None
    epoch_iteration: int | None = None
    iterations_per_epoch: int | None = None
    iteration: int | None = None
    max_iterations: int | None = None
    progress_ratio: float | None = None
    expected_completion_timestamp_seconds: float | None = None
    loss: float | None = None
    losses: Mapping[str, float | None] = field(default_factory=dict)
    accuracy_ratio: float | None = None
    grad_norm: float | None = None
    learning_rate: float | None = None
    base_learning_rate: float | None = None
    iteration_duration_seconds: float | None = None
    data_duration_seconds: float | None = None
    cuda_max_allocated_bytes: int | None = None
    batch_size: int | None = None
    evaluator: str | None = None
    last_train_timestamp_seconds: float | None = None
    nonfinite: tuple[str, ...] = ()
    evaluations: tuple[EvaluationReport, ...] = ()
    eval_key: str | None = None
    best: BestEvaluation | None = None
    checkpoints: tuple[Checkpoint, ...] = ()
    newest_checkpoint: str | None = None
    last_saved: SavedCheckpoint | None = None
    early_stopping: EarlyStopping | None = None
    early_stopping_hook: Mapping[str, Any] = field(default_factory=dict)
    health: Health | None = None
    conditions: tuple[Condition, ...] = ()
    verdict: str | None = None
    verdict_rule: str | None = None
    verdict_reasons: tuple[str, ...] = ()
    advice: str | None = None
    plan_b: tuple[PlanBCheck, ...] = ()
    loss_trend: LossTrend | None = None
    loss_history: LossHistory | None = None  # the run's own loss level an explosion is measured against
    early_stop_analysis: EarlyStopStory | None = None
    policy: PolicyView | None = None
    phase: str | None = None
    loss_recent: tuple[float | None, ...] = ()
    stall_after_seconds: float | None = None
    start_timestamp_seconds: float | None = None
    last_progress_timestamp_seconds: float | None = None
    log_last_write_timestamp_seconds: float | None = None
    sessions: tuple[str, ...] = ()
    attempts: tuple[Attempt, ...] = ()  # earlier trainings in this work dir (new starts, not resumes), oldest first
    attempt_start_timestamp_seconds: float | None = None  # when the current attempt began (null: the run's only one)
    resumes: tuple[Resume, ...] = ()
    log_files: tuple[str, ...] = ()
    log: LogReport = field(default_factory=LogReport)
    process: ProcessInfo | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    gpus: tuple[RunGpu, ...] = ()
    source: str | None = None  # the agent's URL, for a run read from another agent

    def values_of(self, key: str | None) -> list[tuple[EvaluationReport, float]]:
        """(validation, value) of every validation with a finite value of `key`, in order."""
        return [(e, v) for e in self.evaluations if e.mode == "val" and (v := e.value(key)) is not None]


@dataclass(frozen=True, slots=True)
class HostPolicy:
    gpu_temperature_max_celsius: float | None = None
    gpu_memory_full_ratio: float | None = None


@dataclass(frozen=True, slots=True)
class GpuReport:
    """A GPU and the runs whose processes use it (written flat: the GPU's fields, then `runs`)."""

    __flatten__ = "gpu"
    gpu: GpuSample
    runs: tuple[str, ...] = ()
    source: str | None = None


@dataclass(frozen=True, slots=True)
class StatusReport:
    runs: tuple[RunReport, ...] = ()
    gpus: tuple[GpuReport, ...] = ()
    conditions: tuple[Condition, ...] = ()
    policy: HostPolicy = field(default_factory=HostPolicy)
    timestamp: float | None = None
    gpu_error: str | None = None

    def merged(self, other: StatusReport) -> StatusReport:
        """This host's report and another's side by side (`status`, `live` over several agents)."""
        policy = self.policy if self.policy != HostPolicy() else other.policy
        return StatusReport(self.runs + other.runs, self.gpus + other.gpus, self.conditions + other.conditions,
                            policy, self.timestamp or other.timestamp, self.gpu_error or other.gpu_error)
