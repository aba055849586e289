"""What the state of one run is at an instant, as typed, frozen values: `state.RunState.snapshot()` builds it,
the judge, the status document, the metrics, the views and the notifier read it.

Every number here is finite and in range or absent (values.py); a logged value that is nan/inf is not a float
here but a key in a `nonfinite` tuple. Every name is printable text. Derived facts (the loss components, the
learning rate, the newest checkpoint, ...) are properties, computed from the fields on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import PurePath

from trainwarden.model.records import ConfigFacts

MIB = 1048576
RATIO_ACCURACIES = frozenset({"acc_pose"})  # training accuracies logged as 0-1, not as percentages


@dataclass(frozen=True, slots=True)
class TrainPoint:
    """One logged training step: the logger's window means. `values` holds only finite numbers."""

    timestamp: float | None
    epoch: int | None
    iteration: int | None
    values: Mapping[str, float]
    nonfinite: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LatestTrain:
    """The newest train line, with what only it carries (position in the epoch, eta)."""

    point: TrainPoint
    epoch_iteration: int | None
    iterations_per_epoch: int | None
    eta_seconds: float | None


@dataclass(frozen=True, slots=True)
class Evaluation:
    mode: str  # "val" or "test"
    epoch: int | None
    iteration: int | None
    metrics: Mapping[str, float]  # finite values only, in the order logged
    nonfinite: tuple[str, ...]  # metrics the log wrote as nan/inf
    timestamp: float | None
    session: str

    def value(self, key: str | None) -> float | None:
        return self.metrics.get(key) if key else None


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    start_timestamp: float | None


@dataclass(frozen=True, slots=True)
class LogFile:
    path: str
    kind: str  # a format's name: "log", "console", "scalars", "mmcv_json"
    bytes: int
    mtime: float | None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    file: str  # relative to the work dir (or the checkpoint dir)
    epoch: int | None
    iteration: int | None
    bytes: int
    mtime: float
    best: bool
    link: bool  # mmcv's latest.pth


@dataclass(frozen=True, slots=True)
class SavedCheckpoint:
    unit: str  # "epoch" or "iteration"
    number: int
    timestamp: float | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """An earlier training in the same work dir: a session that started again from the first epoch (or the
    first logged iteration) without a resume ends it. What it reached, never mixed into the current attempt."""

    sessions: tuple[str, ...]
    start_timestamp: float | None
    last_timestamp: float | None
    epoch: int | None
    iteration: int | None
    last_saved: SavedCheckpoint | None
    evaluations: tuple[Evaluation, ...]  # its validations and tests (the last 100)


@dataclass(frozen=True, slots=True)
class BestCheckpointLine:
    """What the log says of the best checkpoint (MMEngine's CheckpointHook, mmcv's EvalHook)."""

    key: str | None
    value: float | None
    unit: str | None
    number: int | None
    checkpoint: str | None
    timestamp: float | None


@dataclass(frozen=True, slots=True)
class LoadedCheckpoint:
    path: str
    auto_resume: bool
    timestamp: float | None


@dataclass(frozen=True, slots=True)
class Resume:
    epoch: int | None
    iteration: int | None
    timestamp: float | None
    session: str


@dataclass(frozen=True, slots=True)
class EarlyStopPoint:
    epoch: int | None
    value: float | None
    counter: int | None


@dataclass(frozen=True, slots=True)
class EarlyStopLog:
    """The early-stop hook's own lines: counter checks and the trigger."""

    key: str | None = None
    counter: int | None = None
    threshold: float | None = None
    patience: int | None = None
    triggered: bool = False
    reason: str | None = None
    message: str | None = None
    timestamp: float | None = None
    session: str | None = None
    history: tuple[EarlyStopPoint, ...] = ()


@dataclass(frozen=True, slots=True)
class EarlyStopping:
    """The early-stop picture: the hook's lines, completed by its settings in the config dump."""

    counter: int | None
    patience: int | None
    threshold: float | None
    key: str | None
    triggered: bool
    reason: str | None
    message: str | None
    history: tuple[EarlyStopPoint, ...]


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    kind: str  # one of records.ERROR_KINDS
    text: str
    timestamp: float | None


@dataclass(frozen=True, slots=True)
class LogCounts:
    lines_total: int = 0
    parse_errors_total: int = 0
    decode_fallbacks_total: int = 0
    errors_total: Mapping[str, int] = field(default_factory=dict)
    file_events_total: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """The training process: ids, name and times only (command lines can hold secrets)."""

    pid: int
    name: str
    up: bool
    matched_by: str
    start_timestamp_seconds: float | None
    end_timestamp_seconds: float | None
    exit_code: int | None
    pids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int
    used_memory_bytes: int | None


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU as NVML read it; a field the GPU does not support is None, never 0 or NaN."""

    index: int
    uuid: str
    name: str | None = None
    pci_bus_id: str | None = None
    driver_version: str | None = None
    utilization_ratio: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_celsius: float | None = None
    power_watts: float | None = None
    energy_joules: float | None = None
    throttle_reasons: Mapping[str, bool] = field(default_factory=dict)
    processes: tuple[GpuProcess, ...] = ()


@dataclass(frozen=True)
class RunSnapshot:
    run: str
    work_dir: str
    framework: str
    config_file: str | None
    config: ConfigFacts
    sessions: tuple[Session, ...]
    files: tuple[LogFile, ...]
    counts: LogCounts
    latest: LatestTrain | None
    iterations_per_epoch: int | None
    max_iterations_logged: int | None
    recent: tuple[TrainPoint, ...]
    history: tuple[TrainPoint, ...]
    pace_seconds: tuple[float, ...]  # sorted
    longest_eval_seconds: float | None
    evaluations: tuple[Evaluation, ...]
    last_saved: SavedCheckpoint | None
    best_line: BestCheckpointLine | None
    last_loaded: LoadedCheckpoint | None
    resumes: tuple[Resume, ...]
    early_stop_log: EarlyStopLog | None
    checkpoint_dir: str | None
    checkpoints: tuple[Checkpoint, ...]
    last_checkpoint_file: str | None
    recent_errors: tuple[ErrorEvent, ...]
    last_error_timestamps: Mapping[str, float]
    first_timestamp: float | None
    last_timestamp: float | None
    last_progress_timestamp: float | None
    phase: str | None  # "train", "val", "test", "checkpoint"
    process: ProcessInfo | None
    version: int = 0
    first_seen_timestamp: float | None = None  # when the agent first read the run (wall clock): history or live
    attempts: tuple[Attempt, ...] = ()  # earlier trainings in this work dir, oldest first (state.py)
    attempt_start_timestamp: float | None = None  # when the current attempt's first session began
    # The newest epoch (iteration) the log says is done after its newest train line: a checkpoint saved at it, a
    # validation of it, a resume from it (state.py). None: nothing after the train line says more than it does.
    completed_epoch: int | None = None
    completed_iteration: int | None = None

    # -- the newest train line ------------------------------------------------------------------------------
    @property
    def values(self) -> Mapping[str, float]:
        return self.latest.point.values if self.latest else {}

    @property
    def nonfinite(self) -> tuple[str, ...]:
        return self.latest.point.nonfinite if self.latest else ()

    @property
    def epoch(self) -> int | None:
        """The epoch the log is at: its newest train line's, or a later one its checkpoints and validations name
        (a log whose interval is longer than an epoch has no train line at all). None for a run whose train lines
        count iterations (`Iter(train)`): it is told in their unit."""
        latest = self.latest
        train = latest.point.epoch if latest else None
        if latest is not None and train is None:
            return None
        done = self.completed_epoch
        if train is None or (done is not None and done > train):
            return done
        return train

    @property
    def iteration(self) -> int | None:
        """The iterations done: the newest train line's, or more when a checkpoint or validation after it says so
        (`[20][150/196]` then `Saving checkpoint at 20 epochs`: 20 whole epochs)."""
        latest = self.latest
        found = [latest.point.iteration] if latest else []
        found.append(self.completed_iteration)
        if self.completed_epoch is not None and self.iterations_per_epoch and (latest is None or latest.point.epoch is not None):
            found.append(self.completed_epoch * self.iterations_per_epoch)
        found = [i for i in found if i is not None]
        return max(found) if found else None

    @property
    def epoch_iteration(self) -> int | None:
        """The position in the current epoch: the newest train line's, or the whole epoch once the log says it is
        done (None when the epoch's length is unknown)."""
        latest = self.latest
        if latest is None or latest.point.epoch is None:
            return None if latest is None else latest.epoch_iteration
        if self.completed_epoch is not None and self.completed_epoch >= latest.point.epoch:
            return self.iterations_per_epoch
        return latest.epoch_iteration

    @property
    def last_train_timestamp(self) -> float | None:
        return self.latest.point.timestamp if self.latest else None

    @property
    def loss(self) -> float | None:
        return self.values.get("loss")

    @cached_property
    def loss_components(self) -> dict[str, float | None]:
        """Loss terms other than the total (`loss_cls`, `decode.loss_ce`, ...); None where the log wrote nan/inf."""
        out: dict[str, float | None] = {k: v for k, v in self.values.items() if _is_component(k)}
        out.update({k: None for k in self.nonfinite if _is_component(k)})
        return out

    @property
    def accuracy_ratio(self) -> float | None:
        """MMDetection's `acc` (and MMSeg's `decode.acc_seg`) are percentages: as a 0-1 ratio. MMPose's `acc_pose`
        is a 0-1 ratio already (RTMPose logs `acc_pose: 0.963095`)."""
        values = self.values
        if "acc" in values:
            return values["acc"] / 100.0
        for k, v in values.items():
            name = k.rsplit(".", 1)[-1]
            if name in RATIO_ACCURACIES:
                return v
            if name.startswith("acc"):
                return v / 100.0
        return None

    @property
    def learning_rate(self) -> float | None:
        values = self.values
        if "lr" in values:
            return values["lr"]
        for k, v in values.items():
            if k.endswith("lr") or k.startswith("lr_"):
                return v
        return None

    @property
    def cuda_max_allocated_bytes(self) -> int | None:
        memory = self.values.get("memory")  # MiB, as MMEngine and mmcv log it
        if memory is None or memory < 0 or memory * MIB > 2**63:
            return None
        return int(memory * MIB)

    @property
    def expected_completion_timestamp(self) -> float | None:
        latest = self.latest
        if latest is None or latest.point.timestamp is None or latest.eta_seconds is None:
            return None
        return latest.point.timestamp + latest.eta_seconds

    @property
    def at_epoch_end(self) -> bool:
        latest = self.latest
        if latest is None or latest.epoch_iteration is None or not latest.iterations_per_epoch:
            return False
        return latest.epoch_iteration >= latest.iterations_per_epoch

    # -- plan and progress ----------------------------------------------------------------------------------
    @property
    def max_epochs(self) -> int | None:
        return self.config.max_epochs

    @cached_property
    def max_iterations(self) -> int | None:
        if self.config.max_iterations:
            return self.config.max_iterations
        if self.max_iterations_logged:
            return self.max_iterations_logged
        if self.config.max_epochs and self.iterations_per_epoch:
            return self.config.max_epochs * self.iterations_per_epoch
        return None

    @property
    def progress_ratio(self) -> float | None:
        """The fraction of training done: iterations done of the run's length, or, when no train line tells the
        iterations, the epochs the log says are done of max_epochs."""
        iteration, max_iterations = self.iteration, self.max_iterations
        if iteration is not None and max_iterations:
            return min(1.0, iteration / max_iterations)
        if self.latest is None and self.completed_epoch is not None and self.max_epochs and self.config.loop != "iteration":
            return min(1.0, self.completed_epoch / self.max_epochs)
        return None

    @cached_property
    def recent_losses(self) -> list[float]:
        return [p.values["loss"] for p in self.recent if "loss" in p.values]

    def series(self, key: str | None) -> list[tuple[Evaluation, float]]:
        """(validation, value) of every validation with a finite value of `key`, in order; computed once per key
        (the verdict, the conditions and the early-stop story all read it)."""
        if not key:
            return []
        cache = self.__dict__.setdefault("_series", {})  # as cached_property does: no setattr on a frozen instance
        found = cache.get(key)
        if found is None:
            found = cache[key] = [(e, e.metrics[key]) for e in self.evaluations if e.mode == "val" and key in e.metrics]
        return found

    @cached_property
    def validations(self) -> tuple[Evaluation, ...]:
        return tuple(e for e in self.evaluations if e.mode == "val")

    # -- checkpoints ----------------------------------------------------------------------------------------
    @cached_property
    def newest_checkpoint(self) -> str | None:
        """The newest numbered checkpoint (epoch_N.pth / iter_N.pth: not a best_*, a link or a backup copy)."""
        regular = [c for c in self.checkpoints
                   if not c.best and not c.link and (c.epoch if c.epoch is not None else c.iteration) is not None]
        if not regular:
            return self.last_checkpoint_file
        newest = max(regular, key=lambda c: (c.epoch or 0, c.iteration or 0, c.mtime))
        return str(PurePath(self.work_dir) / newest.file)

    @cached_property
    def early_stopping(self) -> EarlyStopping | None:
        log, hook = self.early_stop_log, self.config.early_stopping
        if log is None and hook is None:
            return None
        log = log or EarlyStopLog()
        hook = hook or {}
        return EarlyStopping(
            counter=log.counter,
            patience=log.patience if log.patience is not None else _int_or_none(hook.get("patience")),
            threshold=log.threshold if log.threshold is not None else _float_or_none(hook.get("stopping_threshold")),
            key=log.key if log.key is not None else (hook.get("monitor") if isinstance(hook.get("monitor"), str) else None),
            triggered=log.triggered, reason=log.reason, message=log.message, history=log.history,
        )

    @property
    def log_last_write_timestamp(self) -> float | None:
        times = [f.mtime for f in self.files if f.kind != "console" and f.mtime]
        return max(times) if times else None

    @property
    def log_files(self) -> list[str]:
        return sorted(f.path for f in self.files if f.kind != "console")


def _is_component(key: str) -> bool:
    return key != "loss" and "loss" in key.rsplit(".", 1)[-1]


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
