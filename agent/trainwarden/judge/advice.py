"""The concrete next steps of the user's guide, as commands for this run: read the log, resume from the newest
checkpoint, lower the batch size, start Plan B. Pure: run document and policy in, text out."""

from __future__ import annotations

import shlex
from pathlib import Path

from trainwarden.judge.policy import Policy


def _q(text: str) -> str:
    return shlex.quote(text) if any(c in text for c in " '\"$&;|()<>") else text


def config_path(run: dict) -> str:
    """The config copy MMEngine/mmcv wrote into the work dir (a full config that resumes the same run)."""
    return str(Path(run["work_dir"]) / run["config"]) if run.get("config") else "CONFIG.py"


def half_batch(run: dict) -> int | None:
    size = run.get("batch_size")
    return max(1, size // 2) if isinstance(size, int) and size > 1 else None


def resume_command(run: dict, policy: Policy, smaller_batch: bool = False) -> str:
    ckpt = run.get("newest_checkpoint")
    parts = ["python", policy.train_script, _q(config_path(run)), "--work-dir", _q(run["work_dir"])]
    if run.get("framework") == "mmcv":
        parts += ["--resume-from", _q(ckpt)] if ckpt else ["--auto-resume"]
    else:
        parts += ["--resume", _q(ckpt)] if ckpt else ["--resume"]
    if smaller_batch and (half := half_batch(run)) is not None:
        key = "data.samples_per_gpu" if run.get("framework") == "mmcv" else "train_dataloader.batch_size"
        parts += ["--cfg-options", f"{key}={half}"]
    return " ".join(parts)


def batch_hint(run: dict) -> str:
    half = half_batch(run)
    if half is None:
        return "lower the batch size (the guide: 4 -> 2)"
    return f"lower batch_size from {run['batch_size']} to {half}"


def red_steps(run: dict, policy: Policy, oom: bool = False) -> str:
    """What the guide says to do on red: read the log's last lines, resume from the newest checkpoint, and (on
    out of memory) with half the batch size."""
    ckpt = run.get("newest_checkpoint") or "no checkpoint yet: restart from scratch"
    steps = [
        f"1. read the last {policy.log_lines_red} log lines: trainwarden tail {_q(run['work_dir'])} -n {policy.log_lines_red}",
        f"2. newest checkpoint: {ckpt}",
        f"3. resume: {resume_command(run, policy, smaller_batch=oom)}",
    ]
    if oom:
        steps.append(f"4. out of GPU memory: {batch_hint(run)} (already in the command above)")
    return "\n".join(steps)


def plan_b(policy: Policy) -> str:
    return f"start Plan B: {policy.plan_b_command}"
