"""The guide's judgement of a run's evaluations: the decision table (success, stable, stagnant, degraded), the
outcome at the end (partial, failed), the Plan B start conditions one by one, the loss trend, and the early-stop
story with its misfire hints. Pure: run document, recent loss values and policy in; judgement out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trainwarden.judge.advice import plan_b
from trainwarden.judge.policy import Policy


@dataclass
class Verdict:
    verdict: str | None
    rule: str
    advice: str
    reasons: list[str] = field(default_factory=list)
    plan_b: list[dict] = field(default_factory=list)


def loss_trend(losses: list[float], policy: Policy) -> dict | None:
    """Short-term mean against the longer-term mean before it, and the slope over the last 100 logged values."""
    values = [v for v in losses if math.isfinite(v)]
    short_n = policy.loss_short_window
    if len(values) < short_n + 1:
        return None
    short = values[-short_n:]
    long = values[-short_n - policy.loss_long_window : -short_n]
    last = values[-100:]
    n = len(last)
    mean_x = (n - 1) / 2
    mean_y = sum(last) / n
    var_x = n * (n * n - 1) / 12  # the sum of (x - mean_x)^2 over x = 0..n-1
    # deviations from the means, not sum(xy) - n*mx*my: a flat loss must give a slope of exactly 0, not -1e-17
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(last)) / var_x if var_x else 0.0
    short_mean, long_mean = sum(short) / len(short), sum(long) / len(long)
    return {
        "short_mean": short_mean,
        "long_mean": long_mean,
        "rise_ratio": short_mean / long_mean - 1 if long_mean > 0 else None,
        "mean_100": mean_y,
        "slope_per_log": slope,
        "falling": slope < 0,
        "values": n,
    }


def recall_key(evaluation: dict, policy: Policy) -> str | None:
    if policy.recall_key:
        return policy.recall_key
    return next((k for k in evaluation.get("metrics", {}) if "recall" in k.lower()), None)


def series(run: dict, key: str | None) -> list[tuple[dict, float]]:
    """(evaluation, value) of every validation that has `key` with a finite value, in order."""
    out = []
    for e in run["evaluations"]:
        value = e["metrics"].get(key) if key else None
        if e["mode"] == "val" and value is not None and math.isfinite(value):
            out.append((e, value))
    return out


def targets_apply(run: dict, policy: Policy) -> bool:
    """Whether the guide's absolute numbers (mAP targets, healthy loss ranges) fit this run: its evaluated key is
    one of `target_keys` (or configured), or, before any evaluation, its config evaluates Pascal VOC mAP."""
    key = run.get("eval_key")
    if key is not None:
        return key in policy.target_keys or key == policy.eval_key
    evaluator = (run.get("evaluator") or "").lower()
    return "voc" in evaluator or evaluator == "map"


def _drops(values: list[float], n: int = 2) -> bool:
    return len(values) > n and all(values[-i] < values[-i - 1] for i in range(1, n + 1))


def plan_b_checks(run: dict, values: list[float], recalls: list[float], policy: Policy) -> list[dict]:
    evaluated = len(values)
    flat = evaluated >= 3 and abs(values[-1] - values[-3]) < policy.plan_b_flat_delta
    low = bool(values) and values[-1] < policy.partial_min
    first = {
        "condition": f"after at least {policy.plan_b_min_epochs} epochs mAP is still below {policy.partial_min:.2f} "
                     "with a flat trend",
        "met": evaluated >= policy.plan_b_min_epochs and low and flat,
        "detail": f"{evaluated} evaluation(s); last {values[-1]:.4f}" if values else "no evaluation yet",
    }
    both = _drops(values) and len(recalls) == len(values) and _drops(recalls)
    second = {
        "condition": "mAP and recall both fell at 2 consecutive evaluations (structural degradation)",
        "met": both,
        "detail": (f"mAP {' > '.join(f'{v:.4f}' for v in values[-3:])}; recall "
                   f"{' > '.join(f'{v:.4f}' for v in recalls[-3:]) if recalls else 'not logged'}"),
    }
    return [first, second]


def judge(run: dict, losses: list[float], policy: Policy) -> Verdict:
    key = run.get("eval_key")
    points = series(run, key)
    values = [v for _, v in points]
    rkey = recall_key(points[-1][0], policy) if points else None
    recalls = [e["metrics"][rkey] for e, _ in points if rkey in e["metrics"]] if rkey else []
    trend = run["loss_trend"] if "loss_trend" in run else loss_trend(losses, policy)
    loss_falling = trend is not None and trend["falling"] and (trend["rise_ratio"] or 0) <= 0
    ended = run["state"] in ("finished", "early_stopped", "crashed")
    checks = plan_b_checks(run, values, recalls, policy) if values else []
    if not values:
        return Verdict("in_progress" if not ended else None, "no evaluation yet", "keep watching")
    last = values[-1]
    reasons = [f"{key}: {', '.join(f'{v:.4f}' for v in values[-6:])}"]
    if _drops(values) and not loss_falling:
        why = "loss no longer falling" if trend else "no loss trend"
        return Verdict("degraded", f"consecutive drops ({values[-3]:.4f} > {values[-2]:.4f} > {last:.4f}), {why}",
                       f"Plan B (λ1 warm-up 0 -> 0.01): {policy.plan_b_command}", reasons, checks)
    if not targets_apply(run, policy):
        return Verdict("in_progress" if not ended else None, f"no target for {key}",
                       "keep watching" if not ended else "set policy.targets for this metric to judge it", reasons, checks)
    if any(v >= policy.goal for v in values):
        best = max(values)
        if rkey and recalls and recalls[-1] < policy.recall_goal:
            reasons.append(f"recall {recalls[-1]:.4f} is below the goal {policy.recall_goal:.2f}")
        return Verdict("success", f"one evaluation >= {policy.goal:.2f} (best {best:.4f})",
                       "go to stage 2.2 (re-introduce MACL with a small λ1)", reasons, checks)
    if any(c["met"] for c in checks):  # before `stagnant`: five flat epochs below 0.60 call for Plan B, not a nudge
        met = next(c for c in checks if c["met"])
        return Verdict("failed", f"Plan B condition: {met['condition']}", plan_b(policy), reasons, checks)
    lo, hi = policy.stagnant_band
    recent = values[-policy.stagnant_evaluations:]
    if len(recent) == policy.stagnant_evaluations and all(lo <= v <= hi for v in recent):
        return Verdict("stagnant", f"{len(recent)} evaluations all within {lo:.2f}-{hi:.2f}",
                       "nudge the learning rate or raise batch_size", reasons, checks)
    if ended:
        if last >= policy.partial_min:
            return Verdict("partial", f"final {key} {last:.4f} in {policy.partial_min:.2f}-{policy.goal:.2f}",
                           f"train 3 more epochs, or {plan_b(policy)}", reasons, checks)
        return Verdict("failed", f"final {key} {last:.4f} below {policy.partial_min:.2f}", plan_b(policy), reasons, checks)
    if len(values) >= 2 and values[-1] >= policy.stable_min and values[-2] >= policy.stable_min \
            and last >= values[-2] - policy.plan_b_flat_delta:
        return Verdict("stable", f"consecutive evaluations >= {policy.stable_min:.2f}, no downward trend",
                       "one more epoch to confirm, then stage 2.2", reasons, checks)
    return Verdict("in_progress", "not decided yet", "keep watching", reasons, checks)


def early_stop_story(run: dict, losses: list[float], policy: Policy) -> dict | None:
    """Counter, threshold, learning rate, and the guide's misfire hints, when the run uses early stopping."""
    es = run.get("early_stopping")
    if not es:
        return None
    values = [v for _, v in series(run, run.get("eval_key"))]
    threshold = es.get("threshold")
    if threshold is None:
        threshold = policy.early_stop_threshold
    hints = []
    lr = run.get("learning_rate")
    if lr is not None and lr < policy.learning_rate_min:
        hints.append(f"the learning rate is down to {lr:.2e} (below {policy.learning_rate_min:.1e}): too little left to "
                     "recover; resume with a constant lr such as 4e-5")
    recent = values[-3:]
    if threshold is not None and len(recent) >= 2 and min(recent) <= threshold <= max(recent):
        hints.append(f"the threshold {threshold} sits inside the recent fluctuation band "
                     f"{min(recent):.4f}-{max(recent):.4f}: lower it (the guide: 0.55, patience 3, from epoch 5)")
    points = series(run, run.get("eval_key"))
    rkey = recall_key(points[-1][0], policy) if points else None
    if rkey and len(points) >= 2:
        r1, r0 = points[-1][0]["metrics"].get(rkey), points[-2][0]["metrics"].get(rkey)
        if r1 is not None and r0 is not None and r1 < r0 and points[-1][1] < points[-2][1]:
            hints.append("recall fell together with mAP: the validation set fluctuates short-term")
    hook = (run.get("early_stopping_hook") or {})
    if isinstance(hook.get("min_delta"), (int, float)) and hook["min_delta"] >= 0.05:
        hints.append(f"min_delta {hook['min_delta']} (MMEngine's default is 0.1) is larger than mAP moves per epoch")
    steps = []
    if es.get("triggered"):
        best = (run.get("best") or {}).get("checkpoint")
        if best:
            steps.append(f"back up the best checkpoint {best} before anything removes it")
        steps.append("resume with a constant lr 4e-5, early stop off, up to 8 epochs; success when two evaluations "
                     "in a row are >= 0.60 or one is >= 0.63")
    return {"counter": es.get("counter"), "patience": es.get("patience"), "threshold": threshold,
            "triggered": es.get("triggered"), "learning_rate": lr, "misfire_hints": hints, "recovery": steps}
