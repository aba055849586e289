"""Fold records into the state of one run: current values plus bounded history.

Memory stays bounded whatever the log's size: a window of recent train records, a long-range history that
halves its resolution when full, every evaluation up to a cap, fixed-size lists of errors, resumes and
early-stop checks. `snapshot()` copies everything a reader needs, under the lock, as plain data.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field

from trainwarden.model import (
    ERROR_KINDS,
    BestCheckpointRemoved,
    BestCheckpointSaved,
    CheckpointDir,
    CheckpointLoaded,
    CheckpointSaved,
    ConfigFacts,
    EarlyStopCheck,
    EarlyStopTriggered,
    ErrorLine,
    EvalProgress,
    EvalRecord,
    Record,
    Resumed,
    TrainRecord,
)

RECENT_TRAIN = 512
HISTORY_POINTS = 1024
MAX_EVALUATIONS = 10000
RECENT_ERRORS = 50
PACE_SAMPLES = 64


class DecimatingHistory:
    """Keeps at most `capacity` points spread over the whole run: when full, every other point is dropped and
    only every 2nd (4th, ...) new point is kept from then on."""

    def __init__(self, capacity: int = HISTORY_POINTS) -> None:
        self.capacity = capacity
        self.points: list[dict] = []
        self.stride = 1
        self._skipped = 0

    def add(self, point: dict) -> None:
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


class RunState:
    def __init__(self, name: str, work_dir: str, framework: str) -> None:
        self.lock = threading.RLock()
        self.name = name
        self.work_dir = work_dir
        self.framework = framework
        self.config_file: str | None = None
        self.config = ConfigFacts(ts=None)
        self.sessions: dict[str, dict] = {}
        self.files: dict[str, dict] = {}  # path -> {"kind", "bytes", "mtime"}
        self.counters = LogCounters()
        self.latest: TrainRecord | None = None
        self.latest_iteration: int | None = None
        self.iterations_per_epoch: int | None = None
        self.max_iterations: int | None = None
        self.recent: deque[dict] = deque(maxlen=RECENT_TRAIN)
        self.history = DecimatingHistory()
        self.pace: deque[float] = deque(maxlen=PACE_SAMPLES)
        self._last_train_ts: float | None = None
        self._train_end_ts: float | None = None  # the last train record's time, sampled or not
        self.longest_eval_seconds: float | None = None
        self.evaluations: dict[tuple, dict] = {}
        self.last_saved: dict | None = None
        self.best: dict | None = None
        self.removed_best: deque[str] = deque(maxlen=100)
        self.last_loaded: dict | None = None
        self.resumes: deque[dict] = deque(maxlen=100)
        self.early_stop: dict | None = None
        self.checkpoint_dir: str | None = None
        self.checkpoint_files: list[dict] = []
        self.last_checkpoint_file: str | None = None  # MMEngine's `last_checkpoint` file: the newest regular one
        self.recent_errors: deque[dict] = deque(maxlen=RECENT_ERRORS)
        self.last_error_ts: dict[str, float] = {}
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.last_progress_ts: float | None = None
        self.phase: str | None = None  # "train", "val", "test", "checkpoint"
        self.process: dict | None = None  # filled by the process source when one is known
        self.version = 0  # bumped by every change: readers may reuse what they built from an unchanged state

    # -- folding --------------------------------------------------------------------------------------------
    def apply_all(self, records, session: str) -> None:
        with self.lock:
            for rec in records:
                self.apply(rec, session)
            self.version += 1

    def apply(self, rec: Record, session: str) -> None:
        ts = getattr(rec, "ts", None)
        if ts is not None:
            if self.first_ts is None or ts < self.first_ts:
                self.first_ts = ts
            if self.last_ts is None or ts > self.last_ts:
                self.last_ts = ts
            sess = self.sessions.setdefault(session, {"id": session, "start_timestamp": ts})
            if sess["start_timestamp"] is None or ts < sess["start_timestamp"]:
                sess["start_timestamp"] = ts
        if isinstance(rec, TrainRecord):
            self._train(rec, session)
        elif isinstance(rec, EvalRecord):
            self._evaluation(rec, session)
        elif isinstance(rec, EvalProgress):
            self._progress(ts, rec.mode)
        elif isinstance(rec, CheckpointSaved):
            self.last_saved = {"unit": rec.unit, "number": rec.number, "timestamp": ts}
            self._progress(ts, "checkpoint")
        elif isinstance(rec, BestCheckpointSaved):
            best = dict(self.best or {})
            for k, v in (("key", rec.key), ("value", rec.value), ("unit", rec.unit), ("number", rec.number),
                         ("checkpoint", rec.file)):
                if v is not None:
                    best[k] = v
            best["timestamp"] = ts
            self.best = best
        elif isinstance(rec, BestCheckpointRemoved):
            self.removed_best.append(rec.path)
        elif isinstance(rec, CheckpointLoaded):
            self.last_loaded = {"path": rec.path, "auto_resume": rec.auto_resume, "timestamp": ts}
        elif isinstance(rec, Resumed):
            self.resumes.append({"epoch": rec.epoch, "iteration": rec.iteration, "timestamp": ts, "session": session})
            self.recent.clear()
            self._last_train_ts = None
            if self.early_stop:
                self.early_stop["triggered"] = False
        elif isinstance(rec, EarlyStopCheck):
            self._early_stop_check(rec)
        elif isinstance(rec, EarlyStopTriggered):
            es = self.early_stop or {}
            es.update(triggered=True, reason=rec.reason, message=rec.message, timestamp=ts, session=session)
            if rec.key:
                es["key"] = rec.key
            self.early_stop = es
        elif isinstance(rec, ErrorLine):
            self.count_error(rec.kind, rec.text, ts)
        elif isinstance(rec, ConfigFacts):
            self._config(rec)
        elif isinstance(rec, CheckpointDir):
            self.checkpoint_dir = rec.path

    def count_error(self, kind: str, text: str, ts: float | None) -> None:
        kind = kind if kind in self.counters.errors else "log_error"
        self.counters.errors[kind] += 1
        if ts is not None and ts > self.last_error_ts.get(kind, 0):
            self.last_error_ts[kind] = ts
        self.recent_errors.append({"kind": kind, "text": text, "timestamp": ts})

    def _progress(self, ts: float | None, phase: str) -> None:
        self.phase = phase
        if ts is not None and (self.last_progress_ts is None or ts > self.last_progress_ts):
            self.last_progress_ts = ts

    def _train(self, rec: TrainRecord, session: str) -> None:
        if rec.iterations_per_epoch:
            self.iterations_per_epoch = rec.iterations_per_epoch
        if rec.max_iterations:
            self.max_iterations = rec.max_iterations
        iteration = rec.iteration
        if rec.epoch is not None and rec.epoch_iteration is not None and self.iterations_per_epoch:
            iteration = (rec.epoch - 1) * self.iterations_per_epoch + rec.epoch_iteration
        if self.early_stop and self.early_stop.get("triggered") and self.early_stop.get("session") not in (
            None, session
        ):
            self.early_stop["triggered"] = False  # a later session trains again
        self.latest = rec
        self.latest_iteration = iteration
        self._train_end_ts = None if rec.sampled else rec.ts  # a sample is not the line right before an eval
        point = {"timestamp": rec.ts, "epoch": rec.epoch, "iteration": iteration, "values": rec.values}
        self.history.add(point)
        if rec.sampled:
            self.recent.clear()  # a sample stands for a gap: the recent window restarts after it
            self._last_train_ts = None
        else:
            if rec.ts is not None and self._last_train_ts is not None and rec.ts > self._last_train_ts:
                self.pace.append(rec.ts - self._last_train_ts)
            self._last_train_ts = rec.ts
            self.recent.append(point)
            bad = [k for k, v in rec.values.items() if "loss" in k and not math.isfinite(v)]
            if bad:
                self.count_error("nonfinite_loss", f"non-finite {', '.join(bad)} at iteration {iteration}", rec.ts)
        self._progress(rec.ts, "train")

    def _evaluation(self, rec: EvalRecord, session: str) -> None:
        epoch, iteration = rec.epoch, rec.iteration
        if rec.mode == "val":
            if epoch is None and iteration is None:
                iteration = self.latest_iteration  # `Iter(val)`: evaluated right after this training iteration
            elif epoch is not None and iteration is None and self.iterations_per_epoch:
                iteration = epoch * self.iterations_per_epoch
            key = ("val", epoch, iteration)
        else:
            key = ("test", session, rec.ts)
        if rec.mode == "val" and rec.ts is not None and self._train_end_ts is not None:
            took = rec.ts - self._train_end_ts
            if 0 <= took < 7 * 86400 and (self.longest_eval_seconds is None or took > self.longest_eval_seconds):
                self.longest_eval_seconds = took
        self.evaluations.pop(key, None)  # a resumed run evaluating the same point again replaces the old result
        self.evaluations[key] = {
            "mode": rec.mode, "epoch": epoch, "iteration": iteration, "metrics": dict(rec.metrics),
            "timestamp": rec.ts, "session": session,
        }
        while len(self.evaluations) > MAX_EVALUATIONS:
            self.evaluations.pop(next(iter(self.evaluations)))
        self._progress(rec.ts, "train" if rec.mode == "val" else "test")

    def _early_stop_check(self, rec: EarlyStopCheck) -> None:
        es = self.early_stop or {"history": []}
        es.setdefault("history", [])
        es.update(key=rec.key, counter=rec.counter, triggered=rec.triggered, timestamp=rec.ts)
        if rec.threshold is not None:
            es["threshold"] = rec.threshold
        if rec.patience is not None:
            es["patience"] = rec.patience
        es["history"] = [*es["history"][-99:], {"epoch": rec.epoch, "value": rec.value, "counter": rec.counter}]
        self.early_stop = es

    def _config(self, rec: ConfigFacts) -> None:
        old = self.config
        merged = {}
        for name in ("loop", "max_epochs", "max_iterations", "val_interval", "batch_size", "work_dir", "early_stopping",
                     "evaluator"):
            new = getattr(rec, name)
            merged[name] = new if new is not None else getattr(old, name)
        self.config = ConfigFacts(ts=old.ts or rec.ts, versions={**old.versions, **rec.versions}, **merged)

    # -- inputs from the file system -------------------------------------------------------------------------
    def note_file(self, path: str, kind: str, size: int, mtime: float | None) -> None:
        entry = {"kind": kind, "bytes": size, "mtime": mtime}
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

    def set_process(self, process: dict | None) -> None:
        with self.lock:
            if process != self.process:
                self.process = process
                self.version += 1

    def set_checkpoints(self, files: list[dict]) -> None:
        with self.lock:
            if files != self.checkpoint_files:
                self.checkpoint_files = files
                self.version += 1

    # -- reading ---------------------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Everything a reader needs, copied under the lock: no reference into live state escapes."""
        with self.lock:
            latest = self.latest
            return {
                "run": self.name,
                "work_dir": self.work_dir,
                "framework": self.framework,
                "config_file": self.config_file,
                "config": self.config,
                "sessions": sorted((dict(s) for s in self.sessions.values()), key=lambda s: s["id"]),
                "files": {k: dict(v) for k, v in self.files.items()},
                "lines_total": self.counters.lines,
                "parse_errors_total": self.counters.parse_errors,
                "decode_fallbacks_total": self.counters.decode_fallbacks,
                "errors_total": dict(self.counters.errors),
                "latest": latest,
                "latest_iteration": self.latest_iteration,
                "iterations_per_epoch": self.iterations_per_epoch,
                "max_iterations_logged": self.max_iterations,
                "recent": list(self.recent),
                "history": list(self.history.points),
                "pace_seconds": sorted(self.pace),
                "longest_eval_seconds": self.longest_eval_seconds,
                "evaluations": [dict(e) for e in self.evaluations.values()],
                "last_saved": dict(self.last_saved) if self.last_saved else None,
                "best": dict(self.best) if self.best else None,
                "last_loaded": dict(self.last_loaded) if self.last_loaded else None,
                "resumes": list(self.resumes),
                "early_stop": _copy_es(self.early_stop),
                "checkpoint_dir": self.checkpoint_dir,
                "checkpoints": [dict(c) for c in self.checkpoint_files],
                "last_checkpoint_file": self.last_checkpoint_file,
                "recent_errors": list(self.recent_errors),
                "last_error_timestamps": dict(self.last_error_ts),
                "first_timestamp": self.first_ts,
                "last_timestamp": self.last_ts,
                "last_progress_timestamp": self.last_progress_ts,
                "phase": self.phase,
                "process": dict(self.process) if self.process else None,
            }


def _copy_es(es: dict | None) -> dict | None:
    if es is None:
        return None
    out = dict(es)
    if "history" in out:
        out["history"] = [dict(h) for h in out["history"]]
    return out
