"""`trainwarden status` as a readable table (rich), one row per run, then the GPUs."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.table import Table

from trainwarden.model import RunReport, RunState, StatusReport, timefmt
from trainwarden.outputs.views.cells import MISSING, evaluated, fmt, gpu_rows, newest_checkpoint, percent, position, where

STATE_STYLE = {
    "running": "green",
    "finished": "bold green",
    "crashed": "bold red",
    "stalled": "bold red",
    "early_stopped": "yellow",
    "ended": "yellow",
    "interrupted": "dim",
    "unknown": "dim",
}
HEALTH_STYLE = {"green": "green", "yellow": "yellow", "red": "bold red"}


def _progress(run: RunReport) -> str:
    parts = [position(run)] if position(run) != MISSING else []
    if run.progress_ratio is not None:
        parts.append(percent(run.progress_ratio))
    return " ".join(parts) or MISSING


def _last_eval(run: RunReport) -> str:
    evals = evaluated(run)
    if not evals:
        return MISSING
    e = evals[-1]
    value = e.value(run.eval_key)
    text = f"{run.eval_key} {value:.4f} ({where(e)})"
    best = run.best
    if best is not None and best.value is not None and best.value != value:
        text += f"\nbest {best.value:.4f}"
    return text


def _process(run: RunReport) -> str:
    process = run.process
    if process is None:
        return ""
    if process.up:
        gpus = ",".join(str(g.index) for g in run.gpus)
        return f"\n[dim]pid {process.pid}{' gpu ' + gpus if gpus else ''}[/]"
    code = process.exit_code
    return f"\n[dim]pid {process.pid} ended{'' if code is None else f' (exit {code})'}[/]"


def _when(ts: float | None, now: float) -> str:
    if not ts:
        return MISSING
    stamp = timefmt.local(ts, "%m-%d %H:%M")
    return f"{stamp} ({timefmt.relative(ts, now)})" if abs(ts - now) < 48 * 3600 else stamp


def make_console() -> Console:
    """A terminal's own width; 160 columns when the output is a pipe or a file (rich would use 80)."""
    return Console(width=None if sys.stdout.isatty() else 160)


def render_status(report: StatusReport, console: Console | None = None, now: float | None = None) -> None:
    console = console or make_console()
    now = time.time() if now is None else now
    table = Table(title="trainwarden status", title_justify="left", show_lines=False)
    for col in ("run", "state", "progress", "loss", "acc", "lr", "evaluation", "expected end", "newest checkpoint"):
        table.add_column(col, overflow="fold")
    for run in report.runs:
        state = run.state.value
        label = f"[{STATE_STYLE.get(state, '')}]{state}[/]"
        label += _process(run)
        if run.health is not None:
            label += f"\n[{HEALTH_STYLE.get(run.health.value, '')}]{run.health}[/]"
        loss = "[bold red]nan/inf[/]" if "loss" in run.nonfinite else fmt(run.loss)
        table.add_row(
            run.run + (f"\n[dim]{run.source}[/]" if run.source else ""),
            label,
            _progress(run),
            loss,
            percent(run.accuracy_ratio),
            fmt(run.learning_rate, ".2e"),
            _last_eval(run),
            _when(run.expected_completion_timestamp_seconds, now) if run.state == RunState.RUNNING else MISSING,
            newest_checkpoint(run),
        )
    if not report.runs:
        console.print("No runs found (looked for MMEngine <ts>/<ts>.log and MMDetection 2.x <ts>.log files).")
    else:
        console.print(table)
    for run in report.runs:
        for cond in run.conditions:
            style = {"critical": "bold red", "warning": "yellow"}.get(cond.severity.value, "dim")
            console.print(f"[{style}]{cond.severity}[/] {cond.alert}: {cond.summary}")
    if report.gpu_error and not report.gpus:
        console.print(f"[dim]GPUs: {report.gpu_error}[/]")
    if report.gpus:
        gpu_table = Table(title="GPUs", title_justify="left")
        for col in ("gpu", "name", "util", "memory", "temp", "power", "runs"):
            gpu_table.add_column(col)
        for row in gpu_rows(report.gpus, report.policy.gpu_temperature_max_celsius):
            gpu_table.add_row(row.index, row.name, row.utilization, row.memory, row.temperature, row.power, row.runs)
        console.print(gpu_table)
