"""The record types every parser returns and the run state folds.

Records are plain immutable values: a parser turns one log message (or one JSON line) into at most one record,
with no I/O and no clock. ``ts`` is the line's own timestamp in Unix seconds (local time of the host that reads
the log, since MMEngine and mmcv write no time zone), or ``None`` when the line carries none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Closed set of error kinds (the `kind` label of trainwarden_log_errors_total).
ERROR_KINDS = (
    "cuda_oom",  # CUDA out of memory, in any of PyTorch's spellings
    "cuda_error",  # other CUDA runtime errors (illegal memory access, device-side assert, ...)
    "nccl",  # NCCL / distributed communication failures and watchdog timeouts
    "traceback",  # a Python traceback started
    "nonfinite_loss",  # a logged loss that is nan/inf, or CheckInvalidLossHook's message
    "host_oom",  # the host ran out of memory (MemoryError, the kernel's OOM killer, a killed DataLoader worker)
    "log_error",  # an ERROR-level line written by the training framework itself
)

# What happened to a run's files while they were read (the `event` label of trainwarden_log_file_events_total).
FILE_EVENTS = (
    "rotated",  # renamed away and a new file at the same path (logrotate); the rest of the old one was read
    "truncated",  # shorter than what was read (copytruncate): read again from the start
    "recreated",  # other first bytes at the same path: a new file, read from the start
    "long_line",  # a line over 1 MiB, skipped (never held whole in memory)
    "decode_fallback",  # a line that was not UTF-8, read as GB18030 (or with replacement characters)
)


@dataclass(frozen=True, slots=True)
class TrainRecord:
    """One logged training step: values are the logger's window means (50 iterations by default)."""

    ts: float | None
    epoch: int | None  # 1-based; None for iteration-based loops
    epoch_iteration: int | None  # iteration within the epoch, 1-based
    iterations_per_epoch: int | None
    iteration: int | None  # global iteration, for iteration-based loops (epoch-based: derived later)
    max_iterations: int | None  # from `Iter(train) [ 100/3000]`
    values: dict[str, float] = field(default_factory=dict)  # loss, loss_cls, lr, time, memory, acc, ...
    eta_seconds: float | None = None
    sampled: bool = False  # read by the cold-start scanner as a sparse sample, not in sequence


@dataclass(frozen=True, slots=True)
class EvalRecord:
    """Metrics of one validation or test pass (progress lines without metrics are not records)."""

    ts: float | None
    mode: str  # "val" or "test"
    epoch: int | None
    iteration: int | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EvalProgress:
    """A progress line of a validation or test loop (no metrics yet): the run is alive and evaluating."""

    ts: float | None
    mode: str


@dataclass(frozen=True, slots=True)
class CheckpointSaved:
    ts: float | None
    unit: str  # "epoch" or "iteration"
    number: int


@dataclass(frozen=True, slots=True)
class BestCheckpointSaved:
    ts: float | None
    key: str | None
    value: float | None
    unit: str | None
    number: int | None
    file: str


@dataclass(frozen=True, slots=True)
class BestCheckpointRemoved:
    ts: float | None
    path: str


@dataclass(frozen=True, slots=True)
class CheckpointLoaded:
    """`Load checkpoint from ...` / `Auto resumed from the latest checkpoint ...`."""

    ts: float | None
    path: str
    auto_resume: bool = False


@dataclass(frozen=True, slots=True)
class Resumed:
    ts: float | None
    epoch: int | None
    iteration: int | None


@dataclass(frozen=True, slots=True)
class EarlyStopCheck:
    """The user's own early-stop hook: `Epoch 3: mAP=0.5542 (<0.58, 1/2)`."""

    ts: float | None
    epoch: int
    key: str
    value: float
    threshold: float | None
    counter: int
    patience: int | None
    triggered: bool


@dataclass(frozen=True, slots=True)
class EarlyStopTriggered:
    """MMEngine's EarlyStoppingHook decided to stop (no improvement, non-finite metric, threshold reached)."""

    ts: float | None
    reason: str  # "no_improvement", "nonfinite", "threshold"
    key: str | None
    value: float | None
    message: str


@dataclass(frozen=True, slots=True)
class ErrorLine:
    ts: float | None
    kind: str  # one of ERROR_KINDS
    text: str


@dataclass(frozen=True, slots=True)
class ConfigFacts:
    """Facts read (with `ast`, never executed) from the config dump at the top of a log."""

    ts: float | None
    loop: str | None = None  # "epoch" or "iteration"
    max_epochs: int | None = None
    max_iterations: int | None = None
    val_interval: int | None = None
    batch_size: int | None = None
    work_dir: str | None = None
    early_stopping: dict | None = None  # EarlyStoppingHook settings found in custom_hooks
    evaluator: str | None = None  # val_evaluator type (MMEngine) or evaluation metric (mmcv): VOCMetric, mAP, bbox
    versions: dict[str, str] = field(default_factory=dict)  # {"MMEngine": "0.7.3", ...}


@dataclass(frozen=True, slots=True)
class CheckpointDir:
    """`Checkpoints will be saved to <dir>.` - checkpoints may live outside the work dir (out_dir)."""

    ts: float | None
    path: str


Record = (
    TrainRecord
    | EvalRecord
    | EvalProgress
    | CheckpointSaved
    | BestCheckpointSaved
    | BestCheckpointRemoved
    | CheckpointLoaded
    | Resumed
    | EarlyStopCheck
    | EarlyStopTriggered
    | ErrorLine
    | ConfigFacts
    | CheckpointDir
)
