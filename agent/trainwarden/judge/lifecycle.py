"""Judge a run from its snapshot: pure (snapshot, policy, now in; judgement out), no I/O, no clock.

This module decides the run's lifecycle `state` (running, finished, crashed, stalled, early_stopped, unknown) and
which metric is the evaluated one; the health rules of the user's guide (conditions, health, verdict) build on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from trainwarden.judge import conditions as rules
from trainwarden.judge.policy import PREFERRED_EVAL_KEYS, Policy, target_for_epoch
from trainwarden.judge.verdict import early_stop_story, judge, loss_trend, targets_apply

STATES = ("running", "finished", "crashed", "stalled", "early_stopped", "unknown")


@dataclass(frozen=True)
class Judgement:
    state: str
    stall_seconds: float
    reached_end: bool
    eval_key: str | None
    health: str | None = None
    verdict: str | None = None
    advice: str | None = None
    conditions: list[dict] = field(default_factory=list)


def eval_key(snap: dict, policy: Policy) -> str | None:
    """The evaluated metric: configured, else the one MMEngine's best checkpoint names, else a known
    detection/segmentation key, else the first metric of the latest evaluation."""
    evals = [e for e in snap["evaluations"] if e["metrics"]]
    if policy.eval_key:
        return policy.eval_key
    best = snap.get("best") or {}
    if best.get("key"):
        return best["key"]
    if not evals:
        return None
    latest = evals[-1]["metrics"]
    for key in PREFERRED_EVAL_KEYS:
        if key in latest:
            return key
    return next(iter(latest))


def max_iterations(snap: dict) -> int | None:
    cfg = snap["config"]
    if cfg.max_iterations:
        return cfg.max_iterations
    if snap.get("max_iterations_logged"):
        return snap["max_iterations_logged"]
    if cfg.max_epochs and snap.get("iterations_per_epoch"):
        return cfg.max_epochs * snap["iterations_per_epoch"]
    return None


def stall_window(snap: dict, policy: Policy) -> float:
    """Seconds without progress after which a run counts as stalled, measured against its own pace."""
    pace = snap.get("pace_seconds") or []
    window = max(policy.stall_floor_seconds, policy.stall_pace_multiplier * median(pace) if pace else 0.0)
    if not pace:
        window = max(window, policy.stall_unknown_seconds)  # one logged line says nothing of the run's pace
    longest_eval = snap.get("longest_eval_seconds")
    if snap.get("phase") in ("val", "checkpoint") or _at_epoch_end(snap):
        # between an epoch's last train line and its metrics line the log may stay silent a long while
        allowance = policy.stall_eval_multiplier * longest_eval if longest_eval else policy.stall_unknown_seconds
        window = max(window, allowance)
    return window


def _at_epoch_end(snap: dict) -> bool:
    latest = snap.get("latest")
    if latest is None or latest.epoch_iteration is None or not latest.iterations_per_epoch:
        return False
    return latest.epoch_iteration >= latest.iterations_per_epoch


def reached_end(snap: dict) -> tuple[bool, bool]:
    """(training reached its last epoch or iteration, the final evaluation is in)."""
    cfg = snap["config"]
    latest = snap.get("latest")
    saved = snap.get("last_saved") or {}
    vals = [e for e in snap["evaluations"] if e["mode"] == "val"]
    max_it = max_iterations(snap)
    end = final_eval = False
    if cfg.max_epochs and cfg.loop != "iteration":
        end = (saved.get("unit") == "epoch" and saved.get("number", 0) >= cfg.max_epochs) or (
            latest is not None and latest.epoch is not None and latest.epoch >= cfg.max_epochs
            and _at_epoch_end(snap)
        )
        final_eval = any((e["epoch"] or 0) >= cfg.max_epochs for e in vals)
    elif max_it:
        end = (saved.get("unit") == "iteration" and saved.get("number", 0) >= max_it) or (
            (snap.get("latest_iteration") or 0) >= max_it
        )
        final_eval = any((e["iteration"] or 0) >= max_it for e in vals)
    return end or final_eval, final_eval


def judge_state(snap: dict, policy: Policy, now: float) -> Judgement:
    window = stall_window(snap, policy)
    end, final_eval = reached_end(snap)
    key = eval_key(snap, policy)
    evals_expected = bool(snap["config"].val_interval) or any(e["mode"] == "val" for e in snap["evaluations"])
    es = snap.get("early_stop") or {}
    process = snap.get("process") or {}
    last = snap.get("last_progress_timestamp") or snap.get("last_timestamp") or _newest_write(snap)
    quiet = last is not None and now - last > window

    def judged(state: str) -> Judgement:
        return Judgement(state=state, stall_seconds=window, reached_end=end, eval_key=key)

    if es.get("triggered"):
        return judged("early_stopped")
    if end and (final_eval or not evals_expected):
        return judged("finished")
    if process and process.get("up") is False:
        return judged("finished" if end and process.get("exit_code") in (0, None) else "crashed")
    if snap.get("latest") is None and not snap["evaluations"]:
        return judged("unknown")
    if snap.get("latest") is None and all(e["mode"] == "test" for e in snap["evaluations"]):
        return judged("finished")  # a tools/test.py session: its metrics are in
    if quiet:
        return judged("finished" if end else "stalled")
    return judged("running")


def _newest_write(snap: dict) -> float | None:
    times = [f["mtime"] for f in snap.get("files", {}).values() if f.get("mtime") and f.get("kind") != "console"]
    return max(times) if times else None


def recent_losses(snap: dict) -> list[float]:
    return [p["values"]["loss"] for p in snap.get("recent", []) if "loss" in p["values"]]


def assess(run: dict, losses: list[float], policy: Policy, now: float, gpu_conds: dict[int, list[dict]]) -> None:
    """Fill the run document's judgement: targets met, conditions, health, verdict, advice, the Plan B checks,
    the loss trend and the early-stop story."""
    applies = targets_apply(run, policy)
    for e in run["evaluations"]:
        value = e["metrics"].get(run.get("eval_key"))
        target = target_for_epoch(policy, e.get("epoch")) if applies and e["mode"] == "val" else None
        e["target"] = target
        e["met"] = None if target is None or value is None else value >= target
    run["loss_trend"] = loss_trend(losses, policy)  # once: the verdict and the conditions read them
    run["early_stop_analysis"] = early_stop_story(run, losses, policy)
    verdict = judge(run, losses, policy)
    conds = rules.run_conditions(run, losses, verdict, policy, now, gpu_conds)
    run["conditions"] = conds
    run["health"] = rules.health(conds)
    run["verdict"] = verdict.verdict
    run["verdict_rule"] = verdict.rule
    run["verdict_reasons"] = verdict.reasons
    top = next((c for c in conds if c["severity"] in ("critical", "warning")), None)
    run["advice"] = (top["description"] if top and top["severity"] == "critical" else verdict.advice)
    run["plan_b"] = verdict.plan_b
    run["policy"] = {
        "loss_max": policy.loss_max, "loss_rise_ratio": policy.loss_rise_ratio,
        "accuracy_min_ratio": policy.accuracy_min_ratio, "grad_norm_max": policy.grad_norm_max,
        "gpu_temperature_max_celsius": policy.gpu_temperature_max_celsius,
        "gpu_memory_full_ratio": policy.gpu_memory_full_ratio, "learning_rate_min": policy.learning_rate_min,
        "stall_seconds": run.get("stall_after_seconds"), "goal": policy.goal if applies else None,
        "recall_goal": policy.recall_goal if applies else None, "targets_apply": applies,
        "baselines": dict(policy.baselines) if applies else {},
        "loss_range": list(policy.loss_range) if applies and policy.loss_range else None,
    }
