"""The concrete next steps, as commands for this run: read the log, resume from the newest checkpoint, lower the
batch size. One builder for every resume command (the advice in a page, `analyze`, and `trainwarden run
--auto-resume` rewriting the user's own command). Pure."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import PurePath

from trainwarden.judge.policy import Policy
from trainwarden.model import RunState, SavedCheckpoint

RESUME_FLAGS = ("--resume", "--auto-resume", "--resume-from")


@dataclass(frozen=True, slots=True)
class RunPlace:
    """What a resume command needs to know of a run (from a snapshot or from a status document's run)."""

    work_dir: str
    config_file: str | None  # the config copy the trainer wrote into the work dir
    framework: str
    newest_checkpoint: str | None
    batch_size: int | None
    last_saved: SavedCheckpoint | None = None  # what the log's `Saving checkpoint at N epochs` says, file or not


def quote(text: str) -> str:
    return shlex.quote(text) if any(c in text for c in " '\"$&;|()<>") else text


def config_path(place: RunPlace) -> str:
    """The config copy MMEngine/mmcv wrote into the work dir (a full config that resumes the same run)."""
    return str(PurePath(place.work_dir) / place.config_file) if place.config_file else "CONFIG.py"


def half_batch(size: int | None) -> int | None:
    return max(1, size // 2) if isinstance(size, int) and size > 1 else None


def batch_key(framework: str) -> str:
    return "data.samples_per_gpu" if framework == "mmcv" else "train_dataloader.batch_size"


def with_batch(argv: list[str], framework: str, batch_size: int) -> list[str]:
    """`argv` with the batch size set through --cfg-options (replacing one already given)."""
    key = batch_key(framework)
    out = [a for a in argv if not a.startswith(key + "=")]
    if "--cfg-options" in out:
        out.insert(out.index("--cfg-options") + 1, f"{key}={batch_size}")
    else:
        out += ["--cfg-options", f"{key}={batch_size}"]
    return out


def with_resume(argv: list[str], framework: str, batch_size: int | None = None) -> list[str]:
    """The user's own training command, resuming from the newest checkpoint and (when given) another batch size."""
    out = list(argv)
    if not any(a in RESUME_FLAGS or a.startswith("--resume=") for a in out):
        out.append("--auto-resume" if framework == "mmcv" else "--resume")
    return with_batch(out, framework, batch_size) if batch_size is not None else out


def resume_command(place: RunPlace, policy: Policy, smaller_batch: bool = False) -> str:
    ckpt = place.newest_checkpoint
    parts = ["python", policy.train_script, quote(config_path(place)), "--work-dir", quote(place.work_dir)]
    if place.framework == "mmcv":
        parts += ["--resume-from", quote(ckpt)] if ckpt else ["--auto-resume"]
    else:
        parts += ["--resume", quote(ckpt)] if ckpt else ["--resume"]
    if smaller_batch and (half := half_batch(place.batch_size)) is not None:
        parts = with_batch(parts, place.framework, half)
    return " ".join(parts)


def batch_hint(place: RunPlace, policy: Policy) -> str:
    half = half_batch(place.batch_size)
    if half is None:
        return f"lower the batch size ({policy.batch_size_advice})"
    return f"lower batch_size from {place.batch_size} to {half}"


def saved_file(saved: SavedCheckpoint) -> str:
    """The file MMEngine's and mmcv's CheckpointHook write for `Saving checkpoint at N epochs|iterations`."""
    return f"{'epoch' if saved.unit == 'epoch' else 'iter'}_{saved.number}.pth"


def checkpoint_text(place: RunPlace) -> str:
    """The newest checkpoint as a step reads it: the file, else what the log says was saved, else none yet."""
    if place.newest_checkpoint:
        return place.newest_checkpoint
    saved = place.last_saved
    if saved is not None:
        unit = "epochs" if saved.unit == "epoch" else "iterations"
        return f"{saved_file(saved)} (the log saved it at {saved.number} {unit}; not found in the work dir)"
    return "none saved yet: restart from scratch"


RESUMABLE = (RunState.CRASHED, RunState.STALLED)


def next_steps(state: RunState | str, place: RunPlace, policy: Policy, oom: bool = False,
               plan_b: str | None = None, verdict: str | None = None) -> dict[str, str]:
    """The commands that fit the run's state, each once: always how to read the log; a resume only for a run that
    stopped before its end (crashed, stalled, interrupted, or stopped early without success), with half the batch
    size only after an out-of-memory; Plan B only when its conditions are met."""
    steps = {"read the log": f"trainwarden tail {quote(place.work_dir)} -n {policy.log_lines_red}"}
    state = str(getattr(state, "value", state))
    early_failure = state == RunState.EARLY_STOPPED.value and verdict not in (None, "success")
    if state in {s.value for s in RESUMABLE} or state == "interrupted" or early_failure:
        steps["resume from the newest checkpoint"] = resume_command(place, policy, smaller_batch=oom)
        if oom and half_batch(place.batch_size) is None:
            steps["then"] = batch_hint(place, policy)
    if plan_b:
        steps["Plan B"] = plan_b
    unique: dict[str, str] = {}
    for label, command in steps.items():
        if command not in unique.values():
            unique[label] = command
    return unique


def red_steps(place: RunPlace, policy: Policy, oom: bool = False) -> str:
    """What to do on red: read the log's last lines, resume from the newest checkpoint, and (on out of memory)
    with half the batch size."""
    ckpt = checkpoint_text(place)
    steps = [
        f"1. read the last {policy.log_lines_red} log lines: trainwarden tail {quote(place.work_dir)} -n {policy.log_lines_red}",
        f"2. newest checkpoint: {ckpt}",
        f"3. resume: {resume_command(place, policy, smaller_batch=oom)}",
    ]
    if oom:
        steps.append(f"4. out of GPU memory: {batch_hint(place, policy)} (already in the command above)")
    return "\n".join(steps)
