"""Every alert of DESIGN.md section 3 the agent can judge on its own, from a run document, its recent loss
values, its GPUs and the policy. Pure. Each condition carries severity, summary, description and the concrete
next step; `key` identifies it across evaluations (alert, run and labels)."""

from __future__ import annotations

import time

from trainwarden.judge import advice
from trainwarden.judge.policy import Policy, target_for_epoch
from trainwarden.judge.verdict import Verdict, early_stop_story, loss_trend, series, targets_apply

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
RUNBOOK = "README.md#alerts"  # the alerts table of the README: what each means and what to do
EVALUATION_NEWS_SECONDS = 900  # TrainingEvaluationCompleted stays active this long after the evaluation


def condition(run: dict, alert: str, severity: str, summary: str, description: str, since: float | None,
              **labels: str) -> dict:
    key = "|".join([alert, run["run"], *(f"{k}={v}" for k, v in sorted(labels.items()))])
    return {"alert": alert, "severity": severity, "summary": summary, "description": description,
            "runbook": f"{RUNBOOK} ({alert})", "since": since, "labels": labels, "run": run["run"], "key": key}


def _loss_conditions(run: dict, losses: list[float], policy: Policy) -> list[dict]:
    out = []
    ts = run.get("last_train_timestamp_seconds")
    it = f"iteration {run.get('iteration')}" if run.get("iteration") is not None else "the last logged step"
    loss = run.get("loss")
    if "loss" in run.get("nonfinite", []) or _nonfinite_since_last_train(run):
        out.append(condition(run, "TrainingLossNotFinite", "critical", f"{run['run']}: loss is nan/inf",
                             f"The logged loss at {it} is not finite.\n{advice.red_steps(run, policy)}", ts))
    elif loss is not None and loss > policy.loss_max:
        out.append(condition(
            run, "TrainingLossExplosion", "critical", f"{run['run']}: loss {loss:.4f} above {policy.loss_max}",
            f"Loss explosion: the logged loss (a 50-iteration mean) is {loss:.4f} at {it}, above {policy.loss_max}.\n"
            f"{advice.red_steps(run, policy)}\n5. {advice.batch_hint(run)}", ts))
    if run["state"] != "running":
        return out
    trend = run["loss_trend"] if "loss_trend" in run else loss_trend(losses, policy)
    if trend and trend["rise_ratio"] is not None and trend["rise_ratio"] > policy.loss_rise_ratio \
            and not out:
        out.append(condition(
            run, "TrainingLossRising", "warning",
            f"{run['run']}: loss up {trend['rise_ratio'] * 100:.0f}% in the short term",
            f"Mean of the last {policy.loss_short_window} logged losses {trend['short_mean']:.4f} against "
            f"{trend['long_mean']:.4f} before: up more than {policy.loss_rise_ratio * 100:.0f}%. Wait 100 batches and "
            "watch the trend (it may be data noise).", ts))
    if targets_apply(run, policy) and not out:
        short = trend["short_mean"] if trend else loss
        ranges = {"loss": policy.loss_range, **policy.component_ranges} if policy.loss_range else policy.component_ranges
        for component, band in ranges.items():
            value = short if component == "loss" else run.get("losses", {}).get(component)
            if value is None or band is None or band[0] <= value <= band[1]:
                continue
            out.append(condition(
                run, "TrainingLossOutOfRange", "warning", f"{run['run']}: {component} {value:.4f} outside "
                f"{band[0]}-{band[1]}", f"{component} is {value:.4f}, outside the healthy range {band[0]}-{band[1]} "
                "of the guide. Watch whether it keeps drifting.", ts, component=component))
    acc = run.get("accuracy_ratio")
    if acc is not None and acc < policy.accuracy_min_ratio:
        out.append(condition(run, "TrainingAccuracyLow", "warning", f"{run['run']}: accuracy {acc * 100:.1f}%",
                             f"Classification accuracy {acc * 100:.1f}% is below {policy.accuracy_min_ratio * 100:.0f}%.",
                             ts))
    grad = run.get("grad_norm")
    if grad is not None and grad > policy.grad_norm_max:
        out.append(condition(run, "TrainingGradNormHigh", "warning", f"{run['run']}: grad_norm {grad:.2f}",
                             f"The gradient norm {grad:.2f} is above {policy.grad_norm_max} (clip_grad max_norm is 3.0 in "
                             "the guide's config): check the learning rate and the data.", ts))
    return out


def _nonfinite_since_last_train(run: dict) -> bool:
    last_train = run.get("last_train_timestamp_seconds")
    for err in reversed(run["log"].get("recent_errors", [])):
        if err["kind"] == "nonfinite_loss" and err.get("timestamp") is not None and last_train is not None:
            return err["timestamp"] >= last_train
    return False


def when(ts: float | None, now: float) -> str:
    if ts is None:
        return "an unknown time"
    ago = max(0, int(now - ts))
    rel = f"{ago // 3600} h {ago % 3600 // 60} min ago" if ago >= 3600 else f"{ago // 60} min {ago % 60} s ago"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(ts))} ({rel})"


def _failure_conditions(run: dict, policy: Policy, now: float) -> list[dict]:
    out = []
    progress = run.get("last_progress_timestamp_seconds") or 0
    oom_at = (run["log"].get("last_error_timestamps") or {}).get("cuda_oom")
    if oom_at is not None and oom_at >= progress:  # no progress since the out-of-memory (the rule says the same)
        oom = [e for e in run["log"].get("recent_errors", []) if e["kind"] == "cuda_oom"]
        text = oom[-1]["text"][:300] if oom else "CUDA out of memory"
        out.append(condition(
            run, "TrainingCUDAOutOfMemory", "critical", f"{run['run']}: CUDA out of memory",
            f"{text}\n{advice.red_steps(run, policy, oom=True)}", oom_at))
    process = run.get("process") or {}
    if run["state"] == "crashed":
        code = process.get("exit_code")
        out.append(condition(
            run, "TrainingProcessExited", "critical",
            f"{run['run']}: training process {process.get('pid')} exited"
            f"{'' if code is None else f' with code {code}'} before training ended",
            f"The process ended at epoch {run.get('epoch')}, iteration {run.get('iteration')}.\n"
            f"{advice.red_steps(run, policy)}", process.get("end_timestamp_seconds")))
    if run["state"] == "stalled":
        out.append(condition(
            run, "TrainingStalled", "critical", f"{run['run']}: no progress for over {run['stall_after_seconds']:.0f} s",
            f"The log has not moved since {when(run.get('last_progress_timestamp_seconds'), now)}, several times this run's own "
            f"pace. Check the process and the GPU.\n{advice.red_steps(run, policy)}", run.get("last_progress_timestamp_seconds")))
    return out


def _evaluation_conditions(run: dict, verdict: Verdict, policy: Policy, now: float) -> list[dict]:
    out = []
    key = run.get("eval_key")
    points = series(run, key)
    if not points:
        return out
    last, value = points[-1]
    where = f"epoch {last['epoch']}" if last.get("epoch") is not None else f"iteration {last.get('iteration')}"
    label = str(last.get("epoch") if last.get("epoch") is not None else last.get("iteration"))
    if last.get("timestamp") and now - last["timestamp"] < EVALUATION_NEWS_SECONDS:
        out.append(condition(run, "TrainingEvaluationCompleted", "info", f"{run['run']}: {key} {value:.4f} at {where}",
                             f"Validation at {where}: {key} {value:.4f}.", last["timestamp"], evaluation=label))
    if targets_apply(run, policy):
        target = target_for_epoch(policy, last.get("epoch"))
        ended = run["state"] in ("finished", "early_stopped")
        final = ended or (run.get("max_epochs") and (last.get("epoch") or 0) >= run["max_epochs"])
        best = max(v for _, v in points)
        if best >= policy.goal:
            out.append(condition(run, "TrainingTargetReached", "info", f"{run['run']}: {key} {best:.4f} reached the goal",
                                 f"{key} {best:.4f} >= {policy.goal}: {verdict.advice}.", last.get("timestamp")))
        elif final and value < policy.goal:
            out.append(condition(
                run, "TrainingTargetMissed", "critical", f"{run['run']}: final {key} {value:.4f} below {policy.goal}",
                f"The final evaluation ({where}) is {value:.4f}, below the goal {policy.goal}. Analyse the loss trend "
                f"(trainwarden analyze), then {advice.plan_b(policy)}", last.get("timestamp")))
        elif target is not None and value < target:
            out.append(condition(
                run, "TrainingEvaluationBelowTarget", "warning", f"{run['run']}: {key} {value:.4f} below {target} at {where}",
                f"{key} {value:.4f} is below the target {target} for {where}.", last.get("timestamp")))
        lr = run.get("learning_rate")
        if lr is not None and lr < policy.learning_rate_min and run["state"] == "running" and best < policy.goal:
            out.append(condition(
                run, "TrainingLearningRateCollapsed", "warning", f"{run['run']}: learning rate {lr:.2e}",
                f"The learning rate is {lr:.2e}, below {policy.learning_rate_min:.1e}, while {key} ({value:.4f}) is still "
                f"below the goal: too little left to recover. Resume with a constant lr such as 4e-5.",
                run.get("last_train_timestamp_seconds")))
    if verdict.verdict == "degraded":
        out.append(condition(run, "TrainingDegraded", "critical", f"{run['run']}: degraded ({verdict.rule})",
                             f"{verdict.rule}. {verdict.advice}", last.get("timestamp")))
    elif verdict.verdict == "stagnant":
        out.append(condition(run, "TrainingStagnant", "warning", f"{run['run']}: stagnant ({verdict.rule})",
                             f"{verdict.rule}: {verdict.advice}.", last.get("timestamp")))
    return out


def _lifecycle_conditions(run: dict, losses: list[float], policy: Policy) -> list[dict]:
    out = []
    story = run["early_stop_analysis"] if "early_stop_analysis" in run else early_stop_story(run, losses, policy)
    if story and not story["triggered"] and (story["counter"] or 0) >= 1:
        hints = "; ".join(story["misfire_hints"]) or "no misfire hint"
        out.append(condition(
            run, "TrainingEarlyStopRisk", "warning",
            f"{run['run']}: early-stop counter {story['counter']}/{story['patience'] or '?'}",
            f"The early-stop counter is {story['counter']} of {story['patience']} (threshold {story['threshold']}). "
            f"Hints: {hints}.", run.get("last_progress_timestamp_seconds")))
    if run["state"] == "finished" and run.get("iteration") is not None:  # not for a tools/test.py session
        out.append(condition(run, "TrainingFinished", "info", f"{run['run']}: training finished",
                             f"Finished at epoch {run.get('epoch')}, iteration {run.get('iteration')}.",
                             run.get("last_progress_timestamp_seconds")))
    elif run["state"] == "early_stopped":
        hints = "; ".join(story["misfire_hints"]) if story else ""
        steps = "; ".join(story["recovery"]) if story else ""
        out.append(condition(run, "TrainingEarlyStopped", "info", f"{run['run']}: early stop triggered",
                             f"Early stop triggered. {('Misfire hints: ' + hints + '. ') if hints else ''}{steps}",
                             run.get("last_progress_timestamp_seconds")))
    return out


def gpu_conditions(gpu: dict, policy: Policy, now: float) -> list[dict]:
    out = []
    name = f"GPU {gpu['index']}"
    anchor = {"run": "", "work_dir": ""}  # a host-level condition: no run (runs on the GPU get their own copy)
    temp = gpu.get("temperature_celsius")
    if temp is not None and temp >= policy.gpu_temperature_max_celsius:
        c = condition(anchor, "GPUTemperatureHigh", "warning", f"{name} at {temp:.0f} °C",
                      f"{name} ({gpu.get('name')}) is at {temp:.0f} °C, at or above {policy.gpu_temperature_max_celsius:.0f} °C: "
                      "check cooling and fan speed.", now, gpu=str(gpu["index"]))
        out.append(c)
    used, total = gpu.get("memory_used_bytes"), gpu.get("memory_total_bytes")
    if used is not None and total and used / total >= policy.gpu_memory_full_ratio:
        out.append(condition(anchor, "GPUMemoryNearlyFull", "warning", f"{name} memory {used / total * 100:.0f}% used",
                             f"{name} uses {used / 2**30:.1f} of {total / 2**30:.1f} GiB: an out-of-memory error is near; "
                             "consider a smaller batch size.", now, gpu=str(gpu["index"])))
    return out


def run_conditions(run: dict, losses: list[float], verdict: Verdict, policy: Policy, now: float,
                   gpu_conds: dict[int, list[dict]]) -> list[dict]:
    out = [*_failure_conditions(run, policy, now), *_loss_conditions(run, losses, policy),
           *_evaluation_conditions(run, verdict, policy, now), *_lifecycle_conditions(run, losses, policy)]
    for gpu in run.get("gpus") or []:  # a hot GPU makes the run on it yellow too (the guide's green needs < 80 °C)
        for c in gpu_conds.get(gpu["index"], []):
            out.append({**c, "run": run["run"], "key": f"{c['key']}|run={run['run']}"})
    out.sort(key=lambda c: (SEVERITY_ORDER[c["severity"]], c["alert"]))
    return out


def health(conditions: list[dict]) -> str:
    severities = {c["severity"] for c in conditions}
    return "red" if "critical" in severities else ("yellow" if "warning" in severities else "green")
