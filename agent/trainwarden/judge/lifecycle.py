"""A run's lifecycle: its state (running, finished, crashed, stalled, early_stopped, ended, interrupted, unknown),
how long a silence may last before it counts as a stall, whether training reached its end (by its stated length,
else by what the log and the process's exit say), and which metric is the evaluated one. Pure: snapshot, policy and
the time in."""

from __future__ import annotations

from dataclasses import dataclass

from trainwarden.judge.policy import PREFERRED_EVAL_KEYS, Policy
from trainwarden.model import RunSnapshot, RunState
from trainwarden.model.values import median


@dataclass(frozen=True, slots=True)
class Lifecycle:
    state: RunState
    stall_seconds: float
    reached_end: bool
    eval_key: str | None
    completed: bool | None = None  # did training complete: None when the log cannot tell
    history: bool = False  # quiet for longer than policy.history_after_seconds when the agent first saw it



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
    """(training reached its last epoch or iteration, the final evaluation is in), by the run's stated length."""
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


def length_known(snap: RunSnapshot) -> bool:
    """The run states how long it trains: a config's max_epochs, or an iteration loop's `[i/N]`."""
    return bool((snap.config.max_epochs and snap.config.loop != "iteration") or snap.max_iterations)


ETA_SLACK = 1.5  # the logged `time` is a window mean, the eta uses the run's global mean: allow this much either way


def last_epoch_by_eta(snap: RunSnapshot) -> bool | None:
    """For an epoch loop of unstated length: is the newest train line in the last epoch? MMEngine and mmcv log
    `eta = time x (max_iters - iter - 1)` truncated to whole seconds, so `eta / time` bounds the iterations left;
    the epoch is the last when fewer than an epoch's iterations remain after this one's end (True), not the last
    when at least half an epoch more remains (False). None when the line says too little (a fast run whose whole
    epoch takes under a second reads `eta: 0:00:00` long before its end)."""
    latest = snap.latest
    if latest is None or latest.eta_seconds is None or latest.epoch_iteration is None or not latest.iterations_per_epoch:
        return None
    pace = latest.point.values.get("time")
    if pace is None or pace <= 0:
        return None
    per_epoch = latest.iterations_per_epoch
    in_epoch = max(0, per_epoch - latest.epoch_iteration)  # iterations of this epoch after the line
    most_left = (latest.eta_seconds + 1) * ETA_SLACK / pace
    least_left = latest.eta_seconds / (ETA_SLACK * pace)
    if most_left - in_epoch < per_epoch:
        return True
    if least_left - in_epoch >= per_epoch / 2:
        return False
    return None


def completion(snap: RunSnapshot) -> tuple[bool | None, bool]:
    """(did training complete: True, False or None when the log cannot tell; is the final evaluation in).

    With a stated length, by reached_end. Without one (a Runner built in Python logs no config dump), by the eta of
    the newest train line, and only when what MMEngine does after the last epoch is in the log: the epoch's
    checkpoint when the run saves checkpoints (CheckpointHook's save_last), no validation cut short."""
    if length_known(snap):
        return reached_end(snap)
    last = last_epoch_by_eta(snap)
    epoch = snap.epoch
    final_eval = epoch is not None and any(e.epoch is not None and e.epoch >= epoch for e in snap.validations)
    if last is not True:
        return last, final_eval
    if snap.phase == "val" and not final_eval:
        return False, False  # the last validation was running when the log stopped
    saved = snap.last_saved
    if saved is not None and saved.unit == "epoch" and saved.number < (epoch or 0):
        newest = [c.epoch for c in snap.checkpoints if c.epoch is not None and not c.best and not c.link]
        if not newest or max(newest) < (epoch or 0):
            return False, final_eval  # the run saves every epoch's checkpoint and the last one is missing
    return True, final_eval


def lifecycle(snap: RunSnapshot, policy: Policy, now: float) -> Lifecycle:
    window = stall_window(snap, policy)
    end, final_eval = completion(snap)
    key = eval_key(snap, policy)

    evals_expected = bool(snap.config.val_interval) or bool(snap.validations)
    es = snap.early_stop_log
    process = snap.process
    last = snap.last_progress_timestamp or snap.last_timestamp or snap.log_last_write_timestamp
    quiet = last is not None and now - last > window
    history = is_history(snap, last, policy)

    def judged(state: RunState) -> Lifecycle:
        if history and state not in (RunState.FINISHED, RunState.EARLY_STOPPED, RunState.ENDED, RunState.UNKNOWN):
            state = RunState.INTERRUPTED  # it stopped long before anyone watched: history, not an incident
        return Lifecycle(state, window, end is True, key, end, history)

    if es is not None and es.triggered:
        return judged(RunState.EARLY_STOPPED)
    if end and (final_eval or not evals_expected):
        return judged(RunState.FINISHED)
    if process is not None and not process.up:
        return judged(_exited(end, process.exit_code))
    if snap.latest is None and not snap.evaluations:
        return judged(RunState.UNKNOWN)
    if snap.latest is None and all(e.mode == "test" for e in snap.evaluations):
        return judged(RunState.FINISHED)  # a tools/test.py session: its metrics are in
    if quiet:
        if end:
            return judged(RunState.FINISHED)
        # a live process that does not move is stalled; a silent log of unstated length that may have ended is not
        return judged(RunState.ENDED if end is None and process is None else RunState.STALLED)
    return judged(RunState.RUNNING)


def is_history(snap: RunSnapshot, last: float | None, policy: Policy) -> bool:
    """The run was already quiet for longer than `history_after_seconds` when the agent first saw it, and nothing
    was written since (a line written later makes it live again); a training process seen up is never history."""
    seen = snap.first_seen_timestamp
    if seen is None or last is None or (snap.process is not None and snap.process.up):
        return False
    return seen - last > policy.history_after_seconds


def _exited(end: bool | None, exit_code: int | None) -> RunState:
    """The state of a run whose process was seen to end: its exit code when known, else what the log says."""
    if end is None:
        return RunState.FINISHED if exit_code == 0 else RunState.CRASHED if exit_code else RunState.ENDED
    return RunState.FINISHED if end and exit_code in (0, None) else RunState.CRASHED
