"""A run's lifecycle: its state (running, finished, crashed, stalled, early_stopped, unknown), how long a silence
may last before it counts as a stall, whether training reached its end, and which metric is the evaluated one.
Pure: snapshot, policy and the time in."""

from __future__ import annotations

from dataclasses import dataclass

from trainwarden.judge.policy import PREFERRED_EVAL_KEYS, Policy
from trainwarden.model import RunSnapshot, RunState


@dataclass(frozen=True, slots=True)
class Lifecycle:
    state: RunState
    stall_seconds: float
    reached_end: bool
    eval_key: str | None



def median(values: list[float]) -> float:
    """The median, as `statistics.median` gives it (not imported: it pulls in `fractions` and `decimal`, about
    1 MiB resident in the agent, for this one line)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

def eval_key(snap: RunSnapshot, policy: Policy) -> str | None:
    """The evaluated metric: configured, else the one MMEngine's best checkpoint names, else a known
    detection/segmentation key, else the first metric of the latest evaluation."""
    if policy.eval_key:
        return policy.eval_key
    if snap.best_line is not None and snap.best_line.key:
        return snap.best_line.key
    evals = [e for e in snap.evaluations if e.metrics or e.nonfinite]
    if not evals:
        return None
    latest = [*evals[-1].metrics, *evals[-1].nonfinite]
    for key in PREFERRED_EVAL_KEYS:
        if key in latest:
            return key
    return latest[0]


def stall_window(snap: RunSnapshot, policy: Policy) -> float:
    """Seconds without progress after which a run counts as stalled, measured against its own pace."""
    pace = snap.pace_seconds
    window = max(policy.stall_floor_seconds, policy.stall_pace_multiplier * median(pace) if pace else 0.0)
    if not pace:
        window = max(window, policy.stall_unknown_seconds)  # one logged line says nothing of the run's pace
    if snap.phase in ("val", "checkpoint") or snap.at_epoch_end:
        # between an epoch's last train line and its metrics line the log may stay silent a long while
        longest = snap.longest_eval_seconds
        allowance = policy.stall_eval_multiplier * longest if longest else policy.stall_unknown_seconds
        window = max(window, allowance)
    return window


def reached_end(snap: RunSnapshot) -> tuple[bool, bool]:
    """(training reached its last epoch or iteration, the final evaluation is in)."""
    cfg = snap.config
    saved = snap.last_saved
    vals = snap.validations
    max_it = snap.max_iterations
    end = final_eval = False
    if cfg.max_epochs and cfg.loop != "iteration":
        end = (saved is not None and saved.unit == "epoch" and saved.number >= cfg.max_epochs) or (
            snap.epoch is not None and snap.epoch >= cfg.max_epochs and snap.at_epoch_end
        )
        final_eval = any((e.epoch or 0) >= cfg.max_epochs for e in vals)
    elif max_it:
        end = (saved is not None and saved.unit == "iteration" and saved.number >= max_it) or (
            (snap.iteration or 0) >= max_it
        )
        final_eval = any((e.iteration or 0) >= max_it for e in vals)
    return end or final_eval, final_eval


def lifecycle(snap: RunSnapshot, policy: Policy, now: float) -> Lifecycle:
    window = stall_window(snap, policy)
    end, final_eval = reached_end(snap)
    key = eval_key(snap, policy)

    def judged(state: RunState) -> Lifecycle:
        return Lifecycle(state, window, end, key)

    evals_expected = bool(snap.config.val_interval) or bool(snap.validations)
    es = snap.early_stop_log
    process = snap.process
    last = snap.last_progress_timestamp or snap.last_timestamp or snap.log_last_write_timestamp
    quiet = last is not None and now - last > window
    if es is not None and es.triggered:
        return judged(RunState.EARLY_STOPPED)
    if end and (final_eval or not evals_expected):
        return judged(RunState.FINISHED)
    if process is not None and not process.up:
        return judged(RunState.FINISHED if end and process.exit_code in (0, None) else RunState.CRASHED)
    if snap.latest is None and not snap.evaluations:
        return judged(RunState.UNKNOWN)
    if snap.latest is None and all(e.mode == "test" for e in snap.evaluations):
        return judged(RunState.FINISHED)  # a tools/test.py session: its metrics are in
    if quiet:
        return judged(RunState.FINISHED if end else RunState.STALLED)
    return judged(RunState.RUNNING)
