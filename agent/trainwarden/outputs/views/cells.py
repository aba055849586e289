"""What every view shows of a run and a GPU, as text cells: the terminal table, `live` and the status page
format the same facts the same way and differ only in how they draw them."""

from __future__ import annotations

from dataclasses import dataclass

from trainwarden.judge.advice import saved_file
from trainwarden.model import EvaluationReport, GpuReport, RunReport

MISSING = "—"  # an unknown value in a table cell
UNKNOWN = "unknown"  # an unknown value in a sentence


def fmt(value: float | None, spec: str = ".4f", suffix: str = "") -> str:
    return MISSING if value is None else f"{format(value, spec)}{suffix}"


def position_of(epoch: int | None, max_epochs: int | None, epoch_iteration: int | None,
                iterations_per_epoch: int | None, iteration: int | None, max_iterations: int | None,
                short: bool = False) -> str | None:
    """`epoch 3/5 [120/11439]` for a run that counts epochs, `iteration 500/3000` for one that counts iterations
    (in the log's own unit: an iteration-based run has no epoch to show); None when the log has not said."""
    if epoch is not None:
        text = f"epoch {epoch}/{max_epochs or '?'}"
        if not short and epoch_iteration is not None:
            text += f" [{epoch_iteration}/{iterations_per_epoch or '?'}]"
        return text
    if iteration is not None:
        return f"iteration {iteration}/{max_iterations or '?'}"
    return None


def position(run: RunReport, short: bool = False) -> str:
    return position_of(run.epoch, run.max_epochs, run.epoch_iteration, run.iterations_per_epoch, run.iteration,
                       run.max_iterations, short) or MISSING


def percent(ratio: float | None, spec: str = ".1f") -> str:
    return fmt(None if ratio is None else ratio * 100, spec, "%")


def evaluated(run: RunReport) -> list[EvaluationReport]:
    """The validations that have a value of the run's evaluated key; the tests that have one only when no
    validation does (tools/test.py after the training is not the run's last evaluation). `where` labels a test."""
    key = run.eval_key
    found = [e for e in run.evaluations if e.value(key) is not None]
    return [e for e in found if e.mode == "val"] or found


def where(e: EvaluationReport) -> str:
    if e.mode == "test":
        return "test"
    if e.epoch is not None:
        return f"epoch {e.epoch}"
    return f"iteration {e.iteration}" if e.iteration else e.mode


def file_name(path: str | None) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1] if path else MISSING


def newest_checkpoint(run: RunReport) -> str:
    """The newest checkpoint file in the work dir, else the one the log says it saved (`Saving checkpoint at 4
    epochs`: epoch_4.pth, marked as not found), else —."""
    if run.newest_checkpoint:
        return file_name(run.newest_checkpoint)
    if run.last_saved is not None:
        return f"{saved_file(run.last_saved)} (in the log, not in the work dir)"
    return MISSING


def is_hot(gpu: GpuReport, limit: float | None) -> bool:
    temp = gpu.gpu.temperature_celsius
    return temp is not None and limit is not None and temp >= limit


@dataclass(frozen=True, slots=True)
class GpuRow:
    index: str
    name: str
    utilization: str
    memory: str
    temperature: str
    power: str
    runs: str
    hot: bool


def gpu_rows(gpus: tuple[GpuReport, ...], temperature_limit: float | None) -> list[GpuRow]:
    rows = []
    for report in gpus:
        g = report.gpu
        memory = MISSING
        if g.memory_used_bytes is not None:
            memory = f"{g.memory_used_bytes / 2**30:.1f}/{(g.memory_total_bytes or 0) / 2**30:.1f} GiB"
        rows.append(GpuRow(str(g.index), g.name or MISSING, percent(g.utilization_ratio, ".0f"), memory,
                           fmt(g.temperature_celsius, ".0f", " °C"), fmt(g.power_watts, ".0f", " W"),
                           ", ".join(report.runs) or MISSING, is_hot(report, temperature_limit)))
    return rows
