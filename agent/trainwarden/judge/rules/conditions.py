"""Which of the registry's alerts are active for a run, and for a GPU. Pure: the snapshot and what the judge
already decided (lifecycle, loss trend, verdict, early-stop story) in; conditions out."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from trainwarden.judge import advice
from trainwarden.judge.lifecycle import Lifecycle
from trainwarden.judge.policy import Policy, target_for_epoch
from trainwarden.judge.rules.registry import rule
from trainwarden.judge.verdict import in_order, plan_b, series
from trainwarden.model import (
    Condition,
    EarlyStopStory,
    GpuSample,
    LossHistory,
    LossTrend,
    RunSnapshot,
    RunState,
    Verdict,
)
from trainwarden.model.timefmt import stamp_utc
from trainwarden.model.values import median


@dataclass(frozen=True, slots=True)
class RunContext:
    """What the rules of one run read besides the snapshot: the judge's earlier decisions."""

    snap: RunSnapshot
    life: Lifecycle
    applies: bool
    trend: LossTrend | None
    history: LossHistory
    verdict: Verdict
    story: EarlyStopStory | None
    place: advice.RunPlace
    policy: Policy
    now: float


def _where(snap: RunSnapshot) -> str:
    return f"iteration {snap.iteration}" if snap.iteration is not None else "the last logged step"


def _position(snap: RunSnapshot) -> str:
    """Where the run is, in the words its loop uses; never a Python None."""
    if snap.iteration is None:
        return "its start (no train line logged yet)"
    if snap.epoch is not None and snap.config.loop != "iteration":
        return f"epoch {snap.epoch}, iteration {snap.iteration}"
    return f"iteration {snap.iteration}"


def explosion(loss: float | None, history: LossHistory, policy: Policy) -> str | None:
    """Why the latest logged loss is an explosion, or None: above `loss_explosion_factor` times the run's own
    median (once enough losses are in), or above `loss_max` after the run had been at or below it."""
    if loss is None:
        return None
    factor, level = policy.loss_explosion_factor, history.median
    if factor is not None and level is not None and loss > factor * level:
        return f"{loss / level:.1f} x the run's own median {level:.4f} over {history.points} logged losses"
    limit, lowest = policy.loss_max, history.minimum
    if limit is not None and loss > limit and lowest is not None and lowest <= limit:
        return f"above {limit:g}, after the run had been down to {lowest:.4f}"
    return None


def metric_fall(values: list[float], policy: Policy) -> dict | None:
    """The evaluated metric fell at the last `metric_fall_evaluations` evaluations in a row, and its last value is
    below its best by more than `metric_fall_noise_multiplier` times its own noise (the median absolute change
    between the evaluations before the falls). Scale-free: any metric where higher is better."""
    n = policy.metric_fall_evaluations
    if len(values) < n + 2:
        return None
    changes = [b - a for a, b in pairwise(values)]
    if not all(c < 0 for c in changes[-n:]):
        return None
    noise = median(abs(c) for c in changes[:-n])
    best = max(values)
    drop = best - values[-1]
    if drop <= policy.metric_fall_noise_multiplier * noise:
        return None
    return {"falls": n, "values": in_order(values[-n - 1:]), "drop": drop, "best": best, "noise": noise,
            "multiplier": policy.metric_fall_noise_multiplier}


def _nonfinite_since_last_train(snap: RunSnapshot) -> bool:
    last_train = snap.last_train_timestamp
    for err in reversed(snap.recent_errors):
        if err.kind == "nonfinite_loss" and err.timestamp is not None and last_train is not None:
            return err.timestamp >= last_train
    return False


def failure_conditions(c: RunContext) -> list[Condition]:
    snap, out = c.snap, []
    progress = snap.last_progress_timestamp or 0
    oom_at = snap.last_error_timestamps.get("cuda_oom")
    if oom_at is not None and oom_at >= progress:  # no progress since the out-of-memory (the rule says the same)
        oom = [e for e in snap.recent_errors if e.kind == "cuda_oom"]
        error = oom[-1].text[:300] if oom else "CUDA out of memory"
        out.append(rule("TrainingCUDAOutOfMemory").fire(snap.run, oom_at, error=error,
                                                        steps=advice.red_steps(c.place, c.policy, oom=True)))
    process = snap.process
    if c.life.state == RunState.CRASHED:
        code = process.exit_code if process else None
        out.append(rule("TrainingProcessExited").fire(
            snap.run, process.end_timestamp_seconds if process else None, pid=process.pid if process else None,
            code="" if code is None else f" with code {code}", where=_position(snap),
            steps=advice.red_steps(c.place, c.policy)))
    if c.life.state == RunState.ENDED:
        out.append(rule("TrainingEndedUnconfirmed").fire(snap.run, snap.last_progress_timestamp, where=_position(snap)))
    if c.life.state == RunState.STALLED:
        last = snap.last_progress_timestamp
        out.append(rule("TrainingStalled").fire(snap.run, last, window=c.life.stall_seconds,
                                                when=stamp_utc(last, c.now), steps=advice.red_steps(c.place, c.policy)))
    return out


def loss_conditions(c: RunContext) -> list[Condition]:
    snap, policy, out = c.snap, c.policy, []
    ts = snap.last_train_timestamp
    loss = snap.loss
    if "loss" in snap.nonfinite or _nonfinite_since_last_train(snap):
        out.append(rule("TrainingLossNotFinite").fire(snap.run, ts, where=_where(snap),
                                                      steps=advice.red_steps(c.place, policy)))
    elif (why := explosion(loss, c.history, policy)) is not None:
        out.append(rule("TrainingLossExplosion").fire(snap.run, ts, loss=loss, why=why, where=_where(snap),
                                                      steps=advice.red_steps(c.place, policy),
                                                      batch_hint=advice.batch_hint(c.place, policy)))
    if c.life.state != RunState.RUNNING:
        return out
    trend = c.trend
    rise = policy.loss_rise_ratio
    if trend and trend.rise_ratio is not None and rise is not None and trend.rise_ratio > rise and not out:
        out.append(rule("TrainingLossRising").fire(
            snap.run, ts, rise=trend.rise_ratio * 100, short_n=policy.loss_short_window, short_mean=trend.short_mean,
            long_mean=trend.long_mean, limit=rise * 100, advice=policy.loss_rising_advice))
    if c.applies and not out:
        short = trend.short_mean if trend else loss
        ranges = {"loss": policy.loss_range, **policy.component_ranges} if policy.loss_range else policy.component_ranges
        for component, band in ranges.items():
            value = short if component == "loss" else snap.loss_components.get(component)
            if value is None or band is None or band[0] <= value <= band[1]:
                continue
            out.append(rule("TrainingLossOutOfRange").fire(snap.run, ts, {"component": component}, component=component,
                                                           value=value, low=band[0], high=band[1]))
    acc = snap.accuracy_ratio
    if acc is not None and policy.accuracy_min_ratio is not None and acc < policy.accuracy_min_ratio:
        out.append(rule("TrainingAccuracyLow").fire(snap.run, ts, accuracy=acc * 100, limit=policy.accuracy_min_ratio * 100))
    grad = snap.values.get("grad_norm")
    if grad is not None and policy.grad_norm_max is not None and grad > policy.grad_norm_max:
        why = f" ({policy.grad_norm_note})" if policy.grad_norm_note else ""
        out.append(rule("TrainingGradNormHigh").fire(snap.run, ts, grad=grad, limit=policy.grad_norm_max, why=why))
    return out


def evaluation_conditions(c: RunContext) -> list[Condition]:
    snap, policy, key, out = c.snap, c.policy, c.life.eval_key, []
    points = series(snap, key)
    if not points:
        return out
    last, value = points[-1]
    where = f"epoch {last.epoch}" if last.epoch is not None else f"iteration {last.iteration}"
    label = str(last.epoch if last.epoch is not None else last.iteration)
    if last.timestamp and c.now - last.timestamp < policy.evaluation_news_seconds:
        out.append(rule("TrainingEvaluationCompleted").fire(snap.run, last.timestamp, {"evaluation": label}, key=key,
                                                            value=value, where=where))
    # not beside the profile's red TrainingDegraded, which says the same and more
    if c.life.state == RunState.RUNNING and c.verdict.verdict != "degraded" \
            and (fall := metric_fall([v for _, v in points], policy)) is not None:
        out.append(rule("TrainingEvaluationFalling").fire(snap.run, last.timestamp, key=key, **fall))
    if c.applies and policy.goal is not None:
        target = target_for_epoch(policy, last.epoch)
        ended = c.life.state in (RunState.FINISHED, RunState.EARLY_STOPPED)
        final = ended or bool(snap.max_epochs and (last.epoch or 0) >= snap.max_epochs)
        best = max(v for _, v in points)
        if best >= policy.goal:
            out.append(rule("TrainingTargetReached").fire(snap.run, last.timestamp, key=key, best=best, goal=policy.goal,
                                                          advice=c.verdict.advice))
        elif final and value < policy.goal:
            out.append(rule("TrainingTargetMissed").fire(snap.run, last.timestamp, key=key, value=value, goal=policy.goal,
                                                         where=where, plan_b=plan_b(policy)))
        elif target is not None and value < target:
            out.append(rule("TrainingEvaluationBelowTarget").fire(snap.run, last.timestamp, key=key, value=value,
                                                                  target=target, where=where))
        lr = snap.learning_rate
        lr_min = policy.learning_rate_min
        if lr is not None and lr_min is not None and lr < lr_min and c.life.state == RunState.RUNNING and best < policy.goal:
            out.append(rule("TrainingLearningRateCollapsed").fire(
                snap.run, snap.last_train_timestamp, lr=lr, limit=lr_min, key=key, value=value,
                advice=f"{policy.recovery_lr_advice[0].upper()}{policy.recovery_lr_advice[1:]}."))
    if c.verdict.verdict == "degraded":
        out.append(rule("TrainingDegraded").fire(snap.run, last.timestamp, rule=c.verdict.rule, advice=c.verdict.advice))
    elif c.verdict.verdict == "stagnant":
        out.append(rule("TrainingStagnant").fire(snap.run, last.timestamp, rule=c.verdict.rule, advice=c.verdict.advice))
    return out


def lifecycle_conditions(c: RunContext) -> list[Condition]:
    snap, story, out = c.snap, c.story, []
    if story and not story.triggered and (story.counter or 0) >= 1:
        count = f"{story.counter} of {story.patience}" if story.patience else f"{story.counter} (patience not logged)"
        threshold = f" (threshold {story.threshold:g})" if story.threshold is not None else ""
        out.append(rule("TrainingEarlyStopRisk").fire(
            snap.run, snap.last_progress_timestamp, count=count, threshold=threshold,
            hints="; ".join(story.misfire_hints) or "no misfire hint"))
    if c.life.state == RunState.FINISHED and snap.iteration is not None:  # not for a tools/test.py session
        out.append(rule("TrainingFinished").fire(snap.run, snap.last_progress_timestamp, where=_position(snap)))
    elif c.life.state == RunState.EARLY_STOPPED:
        hints = "; ".join(story.misfire_hints) if story else ""
        steps = "; ".join(story.recovery) if story else ""
        out.append(rule("TrainingEarlyStopped").fire(snap.run, snap.last_progress_timestamp,
                                                     hints=f"Misfire hints: {hints}. " if hints else "", steps=steps))
    return out


def run_conditions(c: RunContext) -> list[Condition]:
    return [*failure_conditions(c), *loss_conditions(c), *evaluation_conditions(c), *lifecycle_conditions(c)]


def gpu_conditions(gpu: GpuSample, policy: Policy, now: float) -> list[Condition]:
    """A hot or full GPU: host-level (no run); each run on the GPU gets its own copy."""
    out = []
    name = f"GPU {gpu.index}"
    labels = {"gpu": str(gpu.index)}
    temp = gpu.temperature_celsius
    if temp is not None and temp >= policy.gpu_temperature_max_celsius:
        out.append(rule("GPUTemperatureHigh").fire("", now, labels, gpu_name=name, model=gpu.name, temp=temp,
                                                   limit=policy.gpu_temperature_max_celsius))
    used, total = gpu.memory_used_bytes, gpu.memory_total_bytes
    if used is not None and total and used / total >= policy.gpu_memory_full_ratio:
        out.append(rule("GPUMemoryNearlyFull").fire("", now, labels, gpu_name=name, percent=used / total * 100,
                                                    used=used / 2**30, total=total / 2**30))
    return out
