"""A profile's judgement of a run's evaluations: the decision table (success, stable, stagnant, degraded), the
outcome at the end (partial, failed), the Plan B start conditions one by one, and the early-stop story with its
misfire hints. Pure: the evaluated series, the loss trend and the policy in; a Verdict out. Every number and
sentence comes from the policy; without a profile (the neutral defaults) no metric is judged against a number."""

from __future__ import annotations

from trainwarden.judge.policy import Policy
from trainwarden.judge.trend import is_falling
from trainwarden.model import EarlyStopping, EarlyStopStory, Evaluation, LossTrend, PlanBCheck, RunSnapshot, Verdict


def series(snap: RunSnapshot, key: str | None) -> list[tuple[Evaluation, float]]:
    """(validation, value) of every validation that has a finite value of `key`, in order."""
    return snap.series(key)


def recall_key(evaluation: Evaluation, policy: Policy) -> str | None:
    if policy.recall_key:
        return policy.recall_key
    return next((k for k in evaluation.metrics if "recall" in k.lower()), None)


# What an evaluator's name says of the keys it writes, before the first evaluation names them.
_EVALUATOR_PREFIXES = (("voc", "pascal_voc/"), ("coco", "coco/"))


def _profile_bound(policy: Policy) -> float | None:
    """The largest value the profile writes for its metric (its goal and targets): what tells its scale."""
    numbers = [*policy.targets.values(), *(v for v in (policy.goal, policy.stable_min, policy.partial_min) if v is not None)]
    return max(numbers) if numbers else None


def targets_apply(key: str | None, evaluator: str | None, policy: Policy, values: list[float] | tuple = ()) -> bool:
    """Whether the profile's absolute numbers (targets, goal, bands, healthy loss ranges) fit this run: they were
    written for the metrics in `target_keys` (or the configured `eval_key`), so they apply when the evaluated key is
    one of them and on the same scale (a percentage metric, with values above 1, is never compared with a band of
    0-1 values); before any evaluation, when the run's evaluator writes one of those keys. The neutral defaults
    name no key: nothing applies."""
    keys = set(policy.target_keys) | ({policy.eval_key} if policy.eval_key else set())
    if not keys:
        return False
    if key is not None:
        bound = _profile_bound(policy)
        if bound is not None and bound <= 1 and any(v > 1 for v in values):
            return False
        return key in keys
    name = (evaluator or "").lower()
    if name == "map":  # mmcv's `evaluation = dict(metric='mAP')`
        return "mAP" in keys
    return any(word in name and any(k.startswith(prefix) for k in keys) for word, prefix in _EVALUATOR_PREFIXES)


def _drops(values: list[float], n: int = 2) -> bool:
    return len(values) > n and all(values[-i] < values[-i - 1] for i in range(1, n + 1))


def in_order(values: list[float]) -> str:
    """Values in the order they came: `0.6188 -> 0.6297 -> 0.6341` (an arrow is time, never a comparison)."""
    return " -> ".join(f"{v:.4f}" for v in values)


def plan_b_checks(key: str, values: list[float], recalls: list[float], policy: Policy) -> tuple[PlanBCheck, ...]:
    """The profile's Plan B start conditions, one by one (none without a Plan B or a minimum to fall below)."""
    if not policy.plan_b_command or policy.partial_min is None:
        return ()
    evaluated = len(values)
    flat = evaluated >= 3 and abs(values[-1] - values[-3]) < policy.plan_b_flat_delta
    low = bool(values) and values[-1] < policy.partial_min
    first = PlanBCheck(
        f"after at least {policy.plan_b_min_epochs} epochs {key} is still below {policy.partial_min:.2f} with a flat trend",
        evaluated >= policy.plan_b_min_epochs and low and flat,
        f"{evaluated} evaluation(s); last {values[-1]:.4f}" if values else "no evaluation yet",
    )
    both = _drops(values) and len(recalls) == len(values) and _drops(recalls)
    second = PlanBCheck(
        f"{key} and recall both fell at 2 consecutive evaluations (structural degradation)",
        both,
        f"{key} {in_order(values[-3:])}; recall {in_order(recalls[-3:]) if recalls else 'not logged'}",
    )
    return first, second


def plan_b(policy: Policy) -> str:
    return f"start {policy.plan_b_label or 'Plan B'}: {policy.plan_b_command}" if policy.plan_b_command else ""


def verdict(snap: RunSnapshot, key: str | None, applies: bool, trend: LossTrend | None, ended: bool,
            policy: Policy) -> Verdict:
    """The profile's decision table when its targets apply to this run; otherwise no verdict but `in_progress`
    while training runs (the neutral defaults judge no metric against a number)."""
    points = series(snap, key)
    values = [v for _, v in points]
    rkey = recall_key(points[-1][0], policy) if points else None
    recalls = [e.metrics[rkey] for e, _ in points if rkey in e.metrics] if rkey else []
    if not values:
        return Verdict("in_progress" if not ended else None, "no evaluation yet", "keep watching")
    last = values[-1]
    reasons = [f"{key}: {', '.join(f'{v:.4f}' for v in values[-6:])}"]
    if not applies:
        return Verdict("in_progress" if not ended else None, f"no target for {key}",
                       "keep watching" if not ended else "the run ended; no target is set for this metric",
                       tuple(reasons))
    checks = plan_b_checks(key or "the metric", values, recalls, policy)
    if ended and policy.final_loss_range and (loss := snap.loss) is not None:
        lo, hi = policy.final_loss_range
        if not lo <= loss <= hi:
            reasons.append(f"final loss {loss:.4f} outside {lo}-{hi}")

    def judged(name: str | None, rule: str, advice: str) -> Verdict:
        return Verdict(name, rule, advice, tuple(reasons), checks)

    goal = policy.goal
    # degraded is about a training that still runs: after its end the outcome (partial, failed) says it
    if not ended and _drops(values) and not is_falling(trend):
        why = "loss no longer falling" if trend else "no loss trend"
        plan = f"{policy.plan_b_label or 'Plan B'} ({policy.plan_b_summary}): {policy.plan_b_command}" \
            if policy.plan_b_command else "look at the loss curve and the learning rate before the next evaluation"
        return judged("degraded", f"dropped at 2 consecutive evaluations ({in_order(values[-3:])}), {why}", plan)
    if goal is not None and any(v >= goal for v in values):
        if rkey and recalls and policy.recall_goal is not None and recalls[-1] < policy.recall_goal:
            reasons.append(f"recall {recalls[-1]:.4f} is below the goal {policy.recall_goal:.2f}")
        return judged("success", f"one evaluation >= {goal:.2f} (best {max(values):.4f})", policy.success_advice)
    if any(c.met for c in checks):  # before `stagnant`: five flat epochs below 0.60 call for Plan B, not a nudge
        met = next(c for c in checks if c.met)
        return judged("failed", f"{policy.plan_b_label or 'Plan B'} condition: {met.condition}", plan_b(policy))
    recent = values[-policy.stagnant_evaluations:]
    if policy.stagnant_band is not None:
        lo, hi = policy.stagnant_band
        if len(recent) == policy.stagnant_evaluations and all(lo <= v <= hi for v in recent):
            return judged("stagnant", f"{len(recent)} evaluations all within {lo:.2f}-{hi:.2f}", policy.stagnant_advice)
    if ended and goal is not None:
        then = f", or {plan_b(policy)}" if policy.plan_b_command else ""
        if policy.partial_min is None or last >= policy.partial_min:
            where = f"in {policy.partial_min:.2f}-{goal:.2f}" if policy.partial_min is not None else f"below {goal:.2f}"
            return judged("partial", f"final {key} {last:.4f} {where}", f"{policy.partial_advice}{then}")
        return judged("failed", f"final {key} {last:.4f} below {policy.partial_min:.2f}",
                      plan_b(policy) or policy.partial_advice)
    if ended:
        return judged(None, f"final {key} {last:.4f}; no goal is set", "the run ended")
    stable = policy.stable_min
    if stable is not None and len(values) >= 2 and values[-1] >= stable and values[-2] >= stable \
            and last >= values[-2] - policy.plan_b_flat_delta:
        return judged("stable", f"consecutive evaluations >= {stable:.2f}, no downward trend", policy.stable_advice)
    return judged("in_progress", "not decided yet", "keep watching")


def early_stop_story(snap: RunSnapshot, key: str | None, best_checkpoint: str | None,
                     policy: Policy) -> EarlyStopStory | None:
    """Counter, threshold, learning rate, and the guide's misfire hints, when the run uses early stopping."""
    es: EarlyStopping | None = snap.early_stopping
    if es is None:
        return None
    threshold = es.threshold if es.threshold is not None else policy.early_stop_threshold
    patience = es.patience if es.patience is not None else policy.early_stop_patience
    points = series(snap, key)
    values = [v for _, v in points]
    hints = []
    lr = snap.learning_rate
    if lr is not None and policy.learning_rate_min is not None and lr < policy.learning_rate_min:
        hints.append(f"the learning rate is down to {lr:.2e} (below {policy.learning_rate_min:.1e}): too little left to "
                     f"recover; {policy.recovery_lr_advice}")
    recent = values[-3:]
    if threshold is not None and len(recent) >= 2 and min(recent) <= threshold <= max(recent):
        hints.append(f"the threshold {threshold} sits inside the recent fluctuation band "
                     f"{min(recent):.4f}-{max(recent):.4f}: {policy.early_stop_threshold_advice}")
    rkey = recall_key(points[-1][0], policy) if points else None
    if rkey and len(points) >= 2:
        r1, r0 = points[-1][0].metrics.get(rkey), points[-2][0].metrics.get(rkey)
        if r1 is not None and r0 is not None and r1 < r0 and points[-1][1] < points[-2][1]:
            hints.append("recall fell together with mAP: the validation set fluctuates short-term")
    min_delta = (snap.config.early_stopping or {}).get("min_delta")
    if isinstance(min_delta, (int, float)) and not isinstance(min_delta, bool) \
            and policy.early_stop_min_delta_max is not None and min_delta >= policy.early_stop_min_delta_max:
        hints.append(f"min_delta {min_delta} (MMEngine's default is 0.1) is larger than {key or 'the metric'} moves per epoch")
    steps = []
    if es.triggered:
        if best_checkpoint:
            steps.append(f"back up the best checkpoint {best_checkpoint} before anything removes it")
        steps.append(policy.early_stop_recovery)
    return EarlyStopStory(es.counter, patience, threshold, es.triggered, lr, tuple(hints), tuple(steps))
