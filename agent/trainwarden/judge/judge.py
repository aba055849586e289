"""`judge(snapshot, policy, now, gpus) -> Judgement`: the whole judgement of one run, pure (no I/O, no clock,
no local time zone). Lifecycle first, then the loss trend, the verdict and the early-stop story, then the
registry's conditions, the health they add up to and the advice to show."""

from __future__ import annotations

from dataclasses import replace

from trainwarden.judge import advice
from trainwarden.judge.lifecycle import lifecycle
from trainwarden.judge.policy import Policy, target_for_epoch
from trainwarden.judge.rules.conditions import RunContext, gpu_conditions, run_conditions
from trainwarden.judge.rules.registry import runbook_url
from trainwarden.judge.trend import loss_history, loss_trend
from trainwarden.judge.verdict import early_stop_story, series, targets_apply, verdict
from trainwarden.model import (
    BestEvaluation,
    Condition,
    EvaluationTarget,
    GpuSample,
    Health,
    HostJudgement,
    Judgement,
    PolicyView,
    RunGpu,
    RunSnapshot,
    RunState,
    Severity,
    Verdict,
)

ENDED = (RunState.FINISHED, RunState.EARLY_STOPPED, RunState.CRASHED, RunState.ENDED, RunState.INTERRUPTED)


def run_gpus(snap: RunSnapshot, gpus: tuple[GpuSample, ...] | list[GpuSample]) -> tuple[RunGpu, ...]:
    """The GPUs the run's processes use (through its process tree), with the memory they hold on each."""
    process = snap.process
    if process is None or not process.up:
        return ()
    pids = set(process.pids)
    out = []
    for gpu in gpus:
        mine = [p for p in gpu.processes if p.pid in pids]
        if mine:
            known = [p.used_memory_bytes for p in mine if p.used_memory_bytes is not None]
            out.append(RunGpu(gpu.index, gpu.uuid, sum(known) if known else None))
    return tuple(out)


def best_evaluation(snap: RunSnapshot, key: str | None) -> BestEvaluation | None:
    """The best checkpoint the log names, else the best validation of the evaluated key."""
    line = snap.best_line
    if line is not None and line.key:
        unit, number, per_epoch = line.unit, line.number, snap.iterations_per_epoch
        iteration = number if unit == "iteration" else (number * per_epoch if unit == "epoch" and number and per_epoch
                                                         else None)
        return BestEvaluation(line.key, line.value, number if unit == "epoch" else None, iteration, line.checkpoint)
    points = series(snap, key)
    if not key or not points:
        return None
    top, value = max(points, key=lambda p: p[1])
    files = [c.file for c in snap.checkpoints if c.best]
    return BestEvaluation(key, value, top.epoch, top.iteration, files[-1] if files else None)


def place_of(snap: RunSnapshot) -> advice.RunPlace:
    return advice.RunPlace(snap.work_dir, snap.config_file, snap.framework, snap.newest_checkpoint, snap.config.batch_size,
                           snap.last_saved)


def judge(snap: RunSnapshot, policy: Policy, now: float, gpus: tuple[GpuSample, ...] | list[GpuSample] = ()) -> Judgement:
    life = lifecycle(snap, policy, now)
    key = life.eval_key
    applies = targets_apply(key, snap.config.evaluator, policy, [v for _, v in series(snap, key)])
    targets = []
    for e in snap.evaluations:
        target = target_for_epoch(policy, e.epoch) if applies and e.mode == "val" else None
        value = e.value(key)
        targets.append(EvaluationTarget(target, None if target is None or value is None else value >= target))
    trend = loss_trend(snap.recent_losses, policy)
    history = loss_history(snap, policy)
    best = best_evaluation(snap, key)
    story = early_stop_story(snap, key, best.checkpoint if best else None, policy)
    decided = verdict(snap, key, applies, trend, life.state in ENDED, policy)
    context = RunContext(snap, life, applies, trend, history, decided, story, place_of(snap), policy, now)
    conditions = run_conditions(context)
    mine = run_gpus(snap, gpus)
    by_index = {g.index: g for g in gpus}
    for used in mine:  # a hot GPU makes the run on it yellow too (the guide's green needs < 80 °C)
        conditions += [c.for_run(snap.run) for c in gpu_conditions(by_index[used.index], policy, now)]
    if life.history:  # shown and exported, never a page: only its information stays
        conditions = [c for c in conditions if c.severity == Severity.INFO]
    if policy.runbook_base_url:
        conditions = [replace(c, runbook=runbook_url(c.alert, policy.runbook_base_url)) for c in conditions]
    conditions.sort(key=lambda c: (c.severity.rank, c.alert))
    health = Health.of_severities(c.severity for c in conditions)
    top = next((c for c in conditions if c.severity in (Severity.CRITICAL, Severity.WARNING)), None)
    shown_advice = top.description if top and top.severity == Severity.CRITICAL else decided.advice
    decided = explained(decided, [c for c in conditions if c.severity == Severity.CRITICAL])
    return Judgement(
        state=life.state, stall_seconds=life.stall_seconds, reached_end=life.reached_end, eval_key=key,
        targets_apply=applies, targets=tuple(targets), best=best, loss_trend=trend, early_stop=story, verdict=decided,
        conditions=tuple(conditions), health=health, advice=shown_advice, gpus=mine,
        policy=policy_view(policy, life.stall_seconds, applies), history=life.history, loss_history=history,
    )


GOOD_VERDICTS = ("success", "stable", "partial")


def explained(decided: Verdict, red: list[Condition]) -> Verdict:
    """A verdict of the metric (success, stable, ...) beside a red run says why the run is red all the same: the
    verdict judges the evaluations, the red the run's health (a crash after the goal was reached)."""
    if not red or decided.verdict not in GOOD_VERDICTS:
        return decided
    why = "; ".join(dict.fromkeys(c.summary for c in red))
    return replace(decided, rule=f"{decided.rule}; the run is red all the same: {why}",
                   reasons=(*decided.reasons, f"red: {why}"))


def policy_view(policy: Policy, stall_seconds: float, applies: bool) -> PolicyView:
    return PolicyView(
        loss_max=policy.loss_max, loss_rise_ratio=policy.loss_rise_ratio, accuracy_min_ratio=policy.accuracy_min_ratio,
        grad_norm_max=policy.grad_norm_max, gpu_temperature_max_celsius=policy.gpu_temperature_max_celsius,
        gpu_memory_full_ratio=policy.gpu_memory_full_ratio, learning_rate_min=policy.learning_rate_min,
        stall_seconds=stall_seconds, evaluation_news_seconds=policy.evaluation_news_seconds,
        goal=policy.goal if applies else None,
        recall_goal=policy.recall_goal if applies else None, targets_apply=applies,
        loss_explosion_factor=policy.loss_explosion_factor,
        baselines=dict(policy.baselines) if applies else {},
        loss_range=tuple(policy.loss_range) if applies and policy.loss_range else None,
        plan_label=policy.plan_label or None,
    )


def judge_host(gpus: tuple[GpuSample, ...] | list[GpuSample], policy: Policy, now: float) -> HostJudgement:
    conditions: list[Condition] = [c for g in gpus for c in gpu_conditions(g, policy, now)]
    if policy.runbook_base_url:
        conditions = [replace(c, runbook=runbook_url(c.alert, policy.runbook_base_url)) for c in conditions]
    return HostJudgement(tuple(conditions), policy.gpu_temperature_max_celsius, policy.gpu_memory_full_ratio)
