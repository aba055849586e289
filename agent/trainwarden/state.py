"""Fold records into the state of one run: current values plus bounded history; `snapshot()` freezes it.

Memory stays bounded whatever the log's size: a window of recent train points, a long-range history that halves
its resolution when full, every evaluation up to a cap, fixed-size lists of errors, resumes and early-stop
checks. Points and evaluations are stored as the frozen values the snapshot hands out, so a snapshot copies
references, not data. Every value passes the model's boundary rules (model/values.py) once, when folded.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field, replace

from trainwarden.model import (
    ERROR_KINDS,
    FILE_EVENTS,
    Attempt,
    BestCheckpointLine,
    BestCheckpointRemoved,
    BestCheckpointSaved,
    Checkpoint,
    CheckpointDir,
    CheckpointLoaded,
    CheckpointSaved,
    ConfigFacts,
    EarlyStopCheck,
    EarlyStopLog,
    EarlyStopPoint,
    EarlyStopTriggered,
    ErrorEvent,
    ErrorLine,
    EvalProgress,
    EvalRecord,
    Evaluation,
    LatestTrain,
    LoadedCheckpoint,
    LogCounts,
    LogFile,
    ProcessInfo,
    Record,
    Resume,
    Resumed,
    RunSnapshot,
    SavedCheckpoint,
    Session,
    TrainPoint,
    TrainRecord,
)
from trainwarden.model.codec import from_plain
from trainwarden.model.values import count, finite, split_finite, text

RECENT_TRAIN = 512
HISTORY_POINTS = 1024
MAX_EVALUATIONS = 10000
RECENT_ERRORS = 50
PACE_SAMPLES = 64
MAX_ATTEMPTS = 20  # earlier trainings in one work dir kept in the state
ATTEMPT_EVALUATIONS = 100  # evaluations kept of each earlier attempt


class DecimatingHistory:
    """Keeps at most `capacity` points spread over the whole run: when full, every other point is dropped and
    only every 2nd (4th, ...) new point is kept from then on."""

    def __init__(self, capacity: int = HISTORY_POINTS) -> None:
        self.capacity = capacity
        self.points: list[TrainPoint] = []
        self.stride = 1
        self._skipped = 0

    def add(self, point: TrainPoint) -> None:
        self._skipped += 1
        if self._skipped < self.stride:
            return
        self._skipped = 0
        self.points.append(point)
        if len(self.points) > self.capacity:
            self.points = self.points[::2]
            self.stride *= 2


@dataclass
class LogCounters:
    lines: int = 0
    parse_errors: int = 0
    decode_fallbacks: int = 0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    file_events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILE_EVENTS, 0))


class RunState:
    def __init__(self, name: str, work_dir: str, framework: str) -> None:
        self.lock = threading.RLock()
        self.name = name
        self.work_dir = work_dir
        self.framework = framework
        self.config_file: str | None = None
        self.config = ConfigFacts(ts=None)
        self.sessions: dict[str, float | None] = {}  # session id -> its first timestamp
        self.files: dict[str, LogFile] = {}
        self.counters = LogCounters()
        self.latest: LatestTrain | None = None
        self.latest_iteration: int | None = None
        # The newest epoch (iteration) the log says is done since its newest train line: a checkpoint saved at it,
        # a validation of it, a resume from it. A log without train lines (a log interval longer than an epoch)
        # still says where the run is; a finished epoch counts whole in the progress.
        self.completed_epoch: int | None = None
        self.completed_iteration: int | None = None
        self.iterations_per_epoch: int | None = None
        self.max_iterations: int | None = None
        self.recent: deque[TrainPoint] = deque(maxlen=RECENT_TRAIN)
        self.history = DecimatingHistory()
        self.pace: deque[float] = deque(maxlen=PACE_SAMPLES)
        self._last_train_ts: float | None = None
        self._train_end_ts: float | None = None  # the last train record's time, sampled or not
        self.longest_eval_seconds: float | None = None
        self.evaluations: dict[tuple, Evaluation] = {}
        self.last_saved: SavedCheckpoint | None = None
        self.best: BestCheckpointLine | None = None
        self.last_loaded: LoadedCheckpoint | None = None
        self.resumes: deque[Resume] = deque(maxlen=100)
        self.early_stop: EarlyStopLog | None = None
        self.checkpoint_dir: str | None = None
        self.checkpoint_files: tuple[Checkpoint, ...] = ()
        self.last_checkpoint_file: str | None = None  # MMEngine's `last_checkpoint` file: the newest regular one
        self.recent_errors: deque[ErrorEvent] = deque(maxlen=RECENT_ERRORS)
        self.last_error_ts: dict[str, float] = {}
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.last_progress_ts: float | None = None
        self.phase: str | None = None  # "train", "val", "test", "checkpoint"
        self.process: ProcessInfo | None = None  # filled by the process source when one is known
        self.first_seen: float | None = None  # when the reader first read the run (its own clock)
        self.attempts: deque[Attempt] = deque(maxlen=MAX_ATTEMPTS)  # earlier trainings in this work dir
        self.attempt_start: float | None = None  # the current attempt's first session start (None: the first)
        self._attempt_first_iteration: int | None = None  # the current attempt's first logged iteration
        self._trained_sessions: set[str] = set()  # sessions that logged a train line
        self._resumed_sessions: set[str] = set()  # sessions that resumed (`resumed epoch`, `Auto resumed from`)
        self._latest_session: str | None = None  # the session of the newest train line: iterations only go up in it
        self.version = 0  # bumped by every change: readers may reuse what they built from an unchanged state

    # -- folding --------------------------------------------------------------------------------------------
    def apply_all(self, records, session: str) -> None:
        with self.lock:
            for rec in records:
                self.apply(rec, session)
            self.version += 1

    def apply(self, rec: Record, session: str) -> None:
        ts = finite(getattr(rec, "ts", None))
        if ts is not None:
            if self.first_ts is None or ts < self.first_ts:
                self.first_ts = ts
            if self.last_ts is None or ts > self.last_ts:
                self.last_ts = ts
            start = self.sessions.get(session)
            if start is None or ts < start:
                self.sessions[session] = ts
        if isinstance(rec, TrainRecord):
            self._train(rec, ts, session)
        elif isinstance(rec, EvalRecord):
            self._evaluation(rec, ts, session)
        elif isinstance(rec, EvalProgress):
            self._progress(ts, rec.mode)
        elif isinstance(rec, CheckpointSaved):
            number = count(rec.number)
            if number is not None:
                self.last_saved = SavedCheckpoint(rec.unit, number, ts)
                self._completed(number if rec.unit == "epoch" else None, number if rec.unit != "epoch" else None)
            self._progress(ts, "checkpoint")
        elif isinstance(rec, BestCheckpointSaved):
            old = self.best or BestCheckpointLine(None, None, None, None, None, None)
            self.best = BestCheckpointLine(
                key=text(rec.key) if rec.key is not None else old.key,
                value=finite(rec.value) if rec.value is not None else old.value,
                unit=rec.unit if rec.unit is not None else old.unit,
                number=count(rec.number) if rec.number is not None else old.number,
                checkpoint=text(rec.file) if rec.file is not None else old.checkpoint,
                timestamp=ts,
            )
        elif isinstance(rec, BestCheckpointRemoved):
            pass  # what is on disk is rescanned (set_checkpoints): the line adds nothing
        elif isinstance(rec, CheckpointLoaded):
            self.last_loaded = LoadedCheckpoint(text(rec.path), rec.auto_resume, ts)
            if rec.auto_resume:
                self._resumed_sessions.add(session)
        elif isinstance(rec, Resumed):
            self._resumed_sessions.add(session)
            self.resumes.append(Resume(count(rec.epoch), count(rec.iteration), ts, text(session)))
            # `resumed epoch: 3, iter: 588`: the run is back at what that checkpoint holds, whatever came after it
            self.completed_epoch, self.completed_iteration = count(rec.epoch), count(rec.iteration)
            self.recent.clear()
            self._last_train_ts = None
            if self.early_stop:
                self.early_stop = replace(self.early_stop, triggered=False)
        elif isinstance(rec, EarlyStopCheck):
            self._early_stop_check(rec, ts)
        elif isinstance(rec, EarlyStopTriggered):
            es = self.early_stop or EarlyStopLog()
            self.early_stop = replace(es, triggered=True, reason=rec.reason, message=text(rec.message), timestamp=ts,
                                      session=session, key=text(rec.key) if rec.key else es.key)
        elif isinstance(rec, ErrorLine):
            self.count_error(rec.kind, rec.text, ts)
        elif isinstance(rec, ConfigFacts):
            self._config(rec)
        elif isinstance(rec, CheckpointDir):
            self.checkpoint_dir = rec.path

    def count_error(self, kind: str, message: str, ts: float | None) -> None:
        kind = kind if kind in self.counters.errors else "log_error"
        self.counters.errors[kind] += 1
        if ts is not None and ts > self.last_error_ts.get(kind, 0):
            self.last_error_ts[kind] = ts
        self.recent_errors.append(ErrorEvent(kind, text(message), ts))

    def _completed(self, epoch: int | None, iteration: int | None) -> None:
        if epoch is not None and (self.completed_epoch is None or epoch > self.completed_epoch):
            self.completed_epoch = epoch
        if iteration is not None and (self.completed_iteration is None or iteration > self.completed_iteration):
            self.completed_iteration = iteration

    def _progress(self, ts: float | None, phase: str) -> None:
        self.phase = phase
        if ts is not None and (self.last_progress_ts is None or ts > self.last_progress_ts):
            self.last_progress_ts = ts

    def _starts_over(self, rec: TrainRecord, session: str) -> bool:
        """The first train line of a session that trains again from the start, not resuming: a new attempt."""
        if session in self._trained_sessions:
            return False
        self._trained_sessions.add(session)
        if self.latest is None or session in self._resumed_sessions:
            return False
        epoch, iteration = count(rec.epoch), count(rec.iteration)
        if epoch is not None:
            return epoch <= 1
        first = self._attempt_first_iteration
        return iteration is not None and first is not None and iteration <= first

    def _new_attempt(self, session: str) -> None:
        """Close the current attempt (kept as a summary) and start the next from nothing: its progress,
        evaluations, checkpoints and early stop are its own. Counters and errors stay: they count the whole log."""
        start = self.sessions.get(session)
        earlier = [e for e in self.evaluations.values()][-ATTEMPT_EVALUATIONS:]
        latest = self.latest.point if self.latest else None
        self.attempts.append(Attempt(
            sessions=tuple(k for k, v in sorted(self.sessions.items(), key=lambda kv: kv[1] or 0)
                           if k != session and self._in_attempt(v)),
            start_timestamp=self.attempt_start if self.attempt_start is not None else self.first_ts,
            last_timestamp=max((t for t in (latest.timestamp if latest else None, *(e.timestamp for e in earlier[-1:]),
                                            self.last_saved.timestamp if self.last_saved else None) if t is not None),
                               default=None),
            epoch=latest.epoch if latest else None, iteration=latest.iteration if latest else None,
            last_saved=self.last_saved, evaluations=tuple(earlier),
        ))
        self.attempt_start = start
        self._attempt_first_iteration = None
        self.latest = None
        self.latest_iteration = None
        self.completed_epoch = self.completed_iteration = None
        self.max_iterations = None
        self.recent.clear()
        self.history = DecimatingHistory()
        self.pace.clear()
        self._last_train_ts = self._train_end_ts = None
        self.evaluations = {}
        self.last_saved = None
        self.best = None
        self.last_loaded = None
        self.resumes.clear()
        self.early_stop = None

    def _in_attempt(self, session_start: float | None) -> bool:
        start = self.attempt_start
        return start is None or session_start is None or session_start >= start

    def _train(self, rec: TrainRecord, ts: float | None, session: str) -> None:
        if self._starts_over(rec, session):
            self._new_attempt(session)
        per_epoch = count(rec.iterations_per_epoch)
        if per_epoch:
            self.iterations_per_epoch = per_epoch
        if count(rec.max_iterations):
            self.max_iterations = rec.max_iterations
        epoch, epoch_iteration = count(rec.epoch), count(rec.epoch_iteration)
        iteration = count(rec.iteration)
        if epoch is not None and epoch_iteration is not None and self.iterations_per_epoch:
            iteration = count((epoch - 1) * self.iterations_per_epoch + epoch_iteration)
        if (epoch is None and session == self._latest_session and not rec.sampled and iteration is not None
                and self.latest_iteration is not None and iteration < self.latest_iteration):
            # an iteration loop behind its session's own position: not a step of this run (alive, though)
            self._progress(ts, "train")
            return
        self._latest_session = session
        if self.early_stop and self.early_stop.triggered and self.early_stop.session not in (None, session):
            self.early_stop = replace(self.early_stop, triggered=False)  # a later session trains again
        values, nonfinite = split_finite(rec.values)
        point = TrainPoint(ts, epoch, iteration, values, nonfinite)
        self.latest = LatestTrain(point, epoch_iteration, per_epoch, finite(rec.eta_seconds))
        self.latest_iteration = iteration
        # a train line says where the run is: its epoch is under way (a resume may have gone back before what
        # was saved), its iteration is done
        self.completed_epoch = epoch - 1 if epoch is not None else None
        self.completed_iteration = None
        if self._attempt_first_iteration is None:
            self._attempt_first_iteration = iteration
        self._train_end_ts = None if rec.sampled else ts  # a sample is not the line right before an eval
        self.history.add(point)
        if rec.sampled:
            self.recent.clear()  # a sample stands for a gap: the recent window restarts after it
            self._last_train_ts = None
        else:
            if ts is not None and self._last_train_ts is not None and ts > self._last_train_ts:
                self.pace.append(ts - self._last_train_ts)
            self._last_train_ts = ts
            self.recent.append(point)
            bad = [k for k in nonfinite if "loss" in k]
            if bad:
                self.count_error("nonfinite_loss", f"non-finite {', '.join(bad)} at iteration {iteration}", ts)
        self._progress(ts, "train")

    def _evaluation(self, rec: EvalRecord, ts: float | None, session: str) -> None:
        epoch, iteration = count(rec.epoch), count(rec.iteration)
        if rec.mode == "val":
            if epoch is None and iteration is None:
                # `Iter(val)`: evaluated right after this training iteration (or the checkpoint saved at it)
                done = [i for i in (self.latest_iteration, self.completed_iteration) if i is not None]
                iteration = max(done) if done else None
            elif epoch is not None and iteration is None and self.iterations_per_epoch:
                iteration = count(epoch * self.iterations_per_epoch)
            key: tuple = ("val", epoch, iteration)
        else:
            key = ("test", session, ts)
        if rec.mode == "val" and ts is not None and self._train_end_ts is not None:
            took = ts - self._train_end_ts
            if 0 <= took < 7 * 86400 and (self.longest_eval_seconds is None or took > self.longest_eval_seconds):
                self.longest_eval_seconds = took
        metrics, nonfinite = split_finite(rec.metrics)
        earlier = self.evaluations.pop(key, None)
        if earlier is not None and earlier.session == session:
            # One session's rows of one point are one evaluation: mmcv's EvalHook (`accuracy_top-1`) and its val
            # workflow (`loss`) both write `Epoch(val) [20][40]`. A later session (a resume evaluating the same
            # point again) replaces the old result instead.
            metrics = {**{k: v for k, v in earlier.metrics.items() if k not in nonfinite}, **metrics}
            nonfinite = (*(k for k in earlier.nonfinite if k not in metrics and k not in nonfinite), *nonfinite)
        self.evaluations[key] = Evaluation(rec.mode, epoch, iteration, metrics, nonfinite, ts, session)
        if rec.mode == "val":
            self._completed(epoch, None)
        while len(self.evaluations) > MAX_EVALUATIONS:
            self.evaluations.pop(next(iter(self.evaluations)))
        self._progress(ts, "train" if rec.mode == "val" else "test")

    def _early_stop_check(self, rec: EarlyStopCheck, ts: float | None) -> None:
        es = self.early_stop or EarlyStopLog()
        history = (*es.history[-99:], EarlyStopPoint(count(rec.epoch), finite(rec.value), count(rec.counter)))
        self.early_stop = replace(
            es, key=text(rec.key), counter=count(rec.counter), triggered=rec.triggered, timestamp=ts,
            threshold=finite(rec.threshold) if rec.threshold is not None else es.threshold,
            patience=count(rec.patience) if rec.patience is not None else es.patience, history=history,
        )

    def _config(self, rec: ConfigFacts) -> None:
        old = self.config
        merged = {}
        for name in ("loop", "max_epochs", "max_iterations", "val_interval", "batch_size", "work_dir", "early_stopping",
                     "evaluator"):
            new = getattr(rec, name)
            if name in ("max_epochs", "max_iterations", "val_interval", "batch_size"):
                new = count(new)
            merged[name] = new if new is not None else getattr(old, name)
        self.config = ConfigFacts(ts=old.ts or rec.ts, versions={**old.versions, **rec.versions}, **merged)

    # -- inputs from the file system -------------------------------------------------------------------------
    def note_file(self, path: str, kind: str, size: int, mtime: float | None) -> None:
        entry = LogFile(text(path), kind, size, finite(mtime))
        with self.lock:
            if self.files.get(path) != entry:
                self.files[path] = entry
                self.version += 1

    def note_lines(self, lines: int = 0, parse_errors: int = 0, decode_fallbacks: int = 0) -> None:
        with self.lock:
            self.counters.lines += lines
            self.counters.parse_errors += parse_errors
            self.counters.decode_fallbacks += decode_fallbacks
            self.version += 1

    def note_file_events(self, events) -> None:
        """Count what happened to the run's files (rotations, truncations, over-long lines, ...)."""
        events = [e for e in events if e in self.counters.file_events]
        if events:
            with self.lock:
                for event in events:
                    self.counters.file_events[event] += 1
                self.version += 1

    def set_process(self, process: ProcessInfo | None) -> None:
        if isinstance(process, dict):  # the tracker's plain form
            process = from_plain(ProcessInfo, process)
        with self.lock:
            if process != self.process:
                self.process = process
                self.version += 1

    def set_checkpoints(self, files) -> None:
        files = tuple(from_plain(Checkpoint, f) if isinstance(f, dict) else f for f in files)
        with self.lock:
            if files != self.checkpoint_files:
                self.checkpoint_files = files
                self.version += 1

    # -- reading ---------------------------------------------------------------------------------------------
    def snapshot(self) -> RunSnapshot:
        """Everything a reader needs, frozen, under the lock: no reference into live state escapes."""
        with self.lock:
            return RunSnapshot(
                run=text(self.name),
                work_dir=text(self.work_dir),
                framework=self.framework,
                config_file=text(self.config_file) if self.config_file else None,
                config=self.config,
                sessions=tuple(Session(text(k), v) for k, v in sorted(self.sessions.items())),
                files=tuple(self.files.values()),
                counts=LogCounts(self.counters.lines, self.counters.parse_errors, self.counters.decode_fallbacks,
                                 dict(self.counters.errors), dict(self.counters.file_events)),
                latest=self.latest,
                iterations_per_epoch=self.iterations_per_epoch,
                max_iterations_logged=self.max_iterations,
                recent=tuple(self.recent),
                history=tuple(self.history.points),
                pace_seconds=tuple(sorted(self.pace)),
                longest_eval_seconds=self.longest_eval_seconds,
                evaluations=tuple(self.evaluations.values()),
                last_saved=self.last_saved,
                best_line=self.best,
                last_loaded=self.last_loaded,
                resumes=tuple(self.resumes),
                early_stop_log=self.early_stop,
                checkpoint_dir=self.checkpoint_dir,
                checkpoints=self._attempt_checkpoints(),
                last_checkpoint_file=self.last_checkpoint_file,
                recent_errors=tuple(self.recent_errors),
                last_error_timestamps=dict(self.last_error_ts),
                first_timestamp=self.first_ts,
                last_timestamp=self.last_ts,
                last_progress_timestamp=self.last_progress_ts,
                phase=self.phase,
                process=self.process,
                version=self.version,
                first_seen_timestamp=self.first_seen,
                attempts=tuple(self.attempts),
                attempt_start_timestamp=self.attempt_start,
                completed_epoch=self.completed_epoch,
                completed_iteration=self.completed_iteration,
            )

    def _attempt_checkpoints(self) -> tuple[Checkpoint, ...]:
        """The checkpoints on disk the current attempt saved: written after it began (an earlier attempt's
        `epoch_5.pth` is not this one's newest checkpoint)."""
        start = self.attempt_start
        if start is None:
            return self.checkpoint_files
        return tuple(c for c in self.checkpoint_files if c.mtime >= start)
