"""The `status --json` / `/api/runs` document (DESIGN.md section 3), built from snapshots.

Values not known are null, never invented; non-finite numbers (a nan loss) are null too, with their keys listed
in `nonfinite`, since JSON has no NaN.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from trainwarden.judge.conditions import gpu_conditions
from trainwarden.judge.lifecycle import Judgement, assess, judge_state, max_iterations, recent_losses
from trainwarden.judge.policy import Policy, PolicySet, as_policy_set

MIB = 1048576


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def loss_components(values: dict[str, float]) -> dict[str, float]:
    """Loss terms other than the total: `loss_cls`, `loss_rpn_bbox`, `decode.loss_ce`, ..."""
    return {k: v for k, v in values.items() if k != "loss" and "loss" in k.rsplit(".", 1)[-1]}


def accuracy_ratio(values: dict[str, float]) -> float | None:
    """MMDetection's `acc` (and MMSeg's `decode.acc_seg`) are percentages: returned as a 0-1 ratio."""
    if "acc" in values:
        return values["acc"] / 100.0
    for k, v in values.items():
        if k.rsplit(".", 1)[-1].startswith("acc"):
            return v / 100.0
    return None


def learning_rate(values: dict[str, float]) -> float | None:
    if "lr" in values:
        return values["lr"]
    for k, v in values.items():
        if k.endswith("lr") or k.startswith("lr_"):
            return v
    return None


def _train_fields(snap: dict) -> dict:
    latest = snap.get("latest")
    values = latest.values if latest else {}
    cfg = snap["config"]
    max_it = max_iterations(snap)
    iteration = snap.get("latest_iteration")
    progress = None
    if iteration is not None and max_it:
        progress = min(1.0, iteration / max_it)
    eta = None
    if latest is not None and latest.ts is not None and latest.eta_seconds is not None:
        eta = latest.ts + latest.eta_seconds
    memory = values.get("memory")
    return {
        "epoch": latest.epoch if latest else None,
        "max_epochs": cfg.max_epochs,
        "epoch_iteration": latest.epoch_iteration if latest else None,
        "iterations_per_epoch": snap.get("iterations_per_epoch"),
        "iteration": iteration,
        "max_iterations": max_it,
        "progress_ratio": _num(progress),
        "expected_completion_timestamp_seconds": eta,
        "loss": _num(values.get("loss")),
        "losses": {k: _num(v) for k, v in loss_components(values).items()},
        "accuracy_ratio": _num(accuracy_ratio(values)),
        "grad_norm": _num(values.get("grad_norm")),
        "learning_rate": _num(learning_rate(values)),
        "base_learning_rate": _num(values.get("base_lr")),
        "iteration_duration_seconds": _num(values.get("time")),
        "data_duration_seconds": _num(values.get("data_time")),
        "cuda_max_allocated_bytes": int(memory * MIB) if memory is not None and math.isfinite(memory * MIB) else None,
        "batch_size": cfg.batch_size,
        "evaluator": cfg.evaluator,
        "last_train_timestamp_seconds": latest.ts if latest else None,
        "nonfinite": sorted(k for k, v in values.items() if not math.isfinite(v)),
    }


def _best(snap: dict, key: str | None) -> dict | None:
    best = snap.get("best")
    if best and best.get("key"):
        unit, number, ipe = best.get("unit"), best.get("number"), snap.get("iterations_per_epoch")
        iteration = number if unit == "iteration" else (number * ipe if unit == "epoch" and number and ipe else None)
        return {
            "key": best["key"],
            "value": _num(best.get("value")),
            "epoch": number if unit == "epoch" else None,
            "iteration": iteration,
            "checkpoint": best.get("checkpoint"),
        }
    vals = [e for e in snap["evaluations"] if e["mode"] == "val" and key in e["metrics"]]
    vals = [e for e in vals if math.isfinite(e["metrics"][key])]
    if not key or not vals:
        return None
    top = max(vals, key=lambda e: e["metrics"][key])
    files = [c["file"] for c in snap["checkpoints"] if c["best"]]
    return {
        "key": key,
        "value": top["metrics"][key],
        "epoch": top["epoch"],
        "iteration": top["iteration"],
        "checkpoint": files[-1] if files else None,
    }


def _checkpoint_fields(snap: dict) -> dict:
    files = snap["checkpoints"]
    # the newest numbered checkpoint (epoch_N.pth / iter_N.pth): not a best_*, a link, or a backup copy
    regular = [c for c in files if not c["best"] and not c["link"] and (c["epoch"] or c["iteration"]) is not None]
    newest = max(regular, key=lambda c: (c["epoch"] or 0, c["iteration"] or 0, c["mtime"])) if regular else None
    saved = snap.get("last_saved")
    return {
        "checkpoints": [
            {"file": c["file"], "epoch": c["epoch"], "iteration": c["iteration"], "bytes": c["bytes"],
             "mtime": c["mtime"], "best": c["best"]}
            for c in files
        ],
        "newest_checkpoint": str(Path(snap["work_dir"]) / newest["file"]) if newest else snap.get("last_checkpoint_file"),
        "last_saved": saved,
    }


def _early_stopping(snap: dict) -> dict | None:
    es = snap.get("early_stop")
    hook = snap["config"].early_stopping
    if es is None and hook is None:
        return None
    es = es or {}
    hook = hook or {}
    return {
        "counter": es.get("counter"),
        "patience": es.get("patience", hook.get("patience")),
        "threshold": es.get("threshold", hook.get("stopping_threshold")),
        "key": es.get("key", hook.get("monitor")),
        "triggered": bool(es.get("triggered")),
        "reason": es.get("reason"),
        "message": es.get("message"),
        "history": es.get("history", []),
    }


def run_document(snap: dict, judgement: Judgement) -> dict:
    evaluations = [
        {
            "mode": e["mode"], "epoch": e["epoch"], "iteration": e["iteration"],
            "metrics": {k: _num(v) for k, v in e["metrics"].items()},
            "timestamp": e["timestamp"], "target": None, "met": None,
        }
        for e in snap["evaluations"]
    ]
    log_files = [p for p, f in snap["files"].items() if f["kind"] != "console"]
    mtimes = [snap["files"][p]["mtime"] for p in log_files if snap["files"][p]["mtime"]]
    doc = {
        "run": snap["run"],
        "work_dir": snap["work_dir"],
        "framework": snap["framework"],
        "config": snap.get("config_file"),
        "state": judgement.state,
        **_train_fields(snap),
        "evaluations": evaluations,
        "eval_key": judgement.eval_key,
        "best": _best(snap, judgement.eval_key),
        **_checkpoint_fields(snap),
        "early_stopping": _early_stopping(snap),
        "early_stopping_hook": dict(snap["config"].early_stopping or {}),
        "health": judgement.health,
        "conditions": judgement.conditions,
        "verdict": judgement.verdict,
        "advice": judgement.advice,
        "phase": snap.get("phase"),
        "loss_recent": [_num(p["values"].get("loss")) for p in snap["recent"][-60:]],
        "stall_after_seconds": judgement.stall_seconds,
        "start_timestamp_seconds": snap.get("first_timestamp"),
        "last_progress_timestamp_seconds": snap.get("last_progress_timestamp"),
        "log_last_write_timestamp_seconds": max(mtimes) if mtimes else None,
        "sessions": [s["id"] for s in snap["sessions"]],
        "resumes": snap["resumes"],
        "log_files": sorted(log_files),
        "log": {
            "lines_total": snap["lines_total"],
            "parse_errors_total": snap["parse_errors_total"],
            "decode_fallbacks_total": snap["decode_fallbacks_total"],
            "errors_total": snap["errors_total"],
            "recent_errors": snap["recent_errors"][-10:],
            "last_error_timestamps": snap["last_error_timestamps"],
        },
        "process": snap.get("process"),
        "versions": dict(snap["config"].versions),
    }
    return doc


def to_json(doc: dict) -> bytes:
    """The document as UTF-8 JSON. NaN never reaches it (values pass through _num); allow_nan=False proves it."""
    return json.dumps(doc, allow_nan=False, ensure_ascii=False).encode("utf-8")


def attach_gpus(runs: list[dict], gpus: list[dict]) -> list[dict]:
    """Map GPU compute processes to runs through each run's process tree: `gpus` of a run (with the GPU memory
    its processes use) and `runs` of a GPU."""
    owner: dict[int, dict] = {}
    for run in runs:
        run["gpus"] = []
        process = run.get("process") or {}
        if process.get("up"):
            for pid in process.get("pids", []):
                owner[pid] = run
    out = []
    for gpu in gpus:
        gpu = {**gpu, "runs": []}
        per_run: dict[str, dict] = {}
        for p in gpu.get("processes", []):
            run = owner.get(p["pid"])
            if run is None:
                continue
            entry = per_run.setdefault(run["run"], {"index": gpu["index"], "uuid": gpu["uuid"], "memory_used_bytes": None})
            if p.get("used_memory_bytes") is not None:
                entry["memory_used_bytes"] = (entry["memory_used_bytes"] or 0) + p["used_memory_bytes"]
            if run["run"] not in gpu["runs"]:
                gpu["runs"].append(run["run"])
                run["gpus"].append(entry)
        out.append(gpu)
    return out


def status_document(snapshots: list[dict], policy: Policy | PolicySet, now: float, gpus: list[dict] | None = None) -> dict:
    policies = as_policy_set(policy)
    judged = []
    for snap in snapshots:
        run_policy = policies.for_run(snap["run"])
        judged.append((run_document(snap, judge_state(snap, run_policy, now)), snap, run_policy))
    runs = [doc for doc, _, _ in judged]
    gpu_docs = attach_gpus(runs, gpus or [])
    gpu_conds = {g["index"]: gpu_conditions(g, policies.default, now) for g in gpu_docs}
    for doc, snap, run_policy in judged:
        assess(doc, recent_losses(snap), run_policy, now, gpu_conds)
    host_conditions = [c for conds in gpu_conds.values() for c in conds]
    host_policy = {"gpu_temperature_max_celsius": policies.default.gpu_temperature_max_celsius,
                   "gpu_memory_full_ratio": policies.default.gpu_memory_full_ratio}
    return {"runs": runs, "gpus": gpu_docs, "conditions": host_conditions, "policy": host_policy, "timestamp": now}
