"""`trainwarden status` as a readable table (rich), one row per run, then the GPUs."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.table import Table

STATE_STYLE = {
    "running": "green",
    "finished": "bold green",
    "crashed": "bold red",
    "stalled": "bold red",
    "early_stopped": "yellow",
    "unknown": "dim",
}
HEALTH_STYLE = {"green": "green", "yellow": "yellow", "red": "bold red"}


def _f(value: float | None, fmt: str = "{:.4f}") -> str:
    return fmt.format(value) if value is not None else "—"


def _when(ts: float | None, now: float) -> str:
    if not ts:
        return "—"
    delta = ts - now
    stamp = time.strftime("%m-%d %H:%M", time.localtime(ts))
    if abs(delta) < 48 * 3600:
        hours, rest = divmod(int(abs(delta)), 3600)
        rel = f"{hours}h{rest // 60:02d}m"
        return f"{stamp} ({'in ' + rel if delta > 0 else rel + ' ago'})"
    return stamp


def _progress(run: dict) -> str:
    parts = []
    if run.get("epoch") is not None:
        parts.append(f"epoch {run['epoch']}/{run.get('max_epochs') or '?'}")
        if run.get("epoch_iteration") is not None:
            parts.append(f"[{run['epoch_iteration']}/{run.get('iterations_per_epoch') or '?'}]")
    elif run.get("iteration") is not None:
        parts.append(f"iter {run['iteration']}/{run.get('max_iterations') or '?'}")
    if run.get("progress_ratio") is not None:
        parts.append(f"{run['progress_ratio'] * 100:.1f}%")
    return " ".join(parts) or "—"


def _last_eval(run: dict) -> str:
    key = run.get("eval_key")
    vals = [e for e in run["evaluations"] if key in e["metrics"] and e["metrics"][key] is not None]
    if not vals:
        return "—"
    e = vals[-1]
    if e.get("epoch") is not None:
        where = f"epoch {e['epoch']}"
    else:
        where = f"iter {e['iteration']}" if e.get("iteration") else e["mode"]
    text = f"{key} {e['metrics'][key]:.4f} ({where})"
    best = run.get("best")
    if best and best.get("value") is not None and best["value"] != e["metrics"][key]:
        text += f"\nbest {best['value']:.4f}"
    return text


def _process(run: dict) -> str:
    process = run.get("process")
    if not process:
        return ""
    if process["up"]:
        gpus = ",".join(str(g["index"]) for g in run.get("gpus") or [])
        return f"\n[dim]pid {process['pid']}{' gpu ' + gpus if gpus else ''}[/]"
    code = process.get("exit_code")
    return f"\n[dim]pid {process['pid']} ended{'' if code is None else f' (exit {code})'}[/]"


def make_console() -> Console:
    """A terminal's own width; 160 columns when the output is a pipe or a file (rich would use 80)."""
    return Console(width=None if sys.stdout.isatty() else 160)


def render_status(doc: dict, console: Console | None = None, now: float | None = None) -> None:
    console = console or make_console()
    now = time.time() if now is None else now
    table = Table(title="trainwarden status", title_justify="left", show_lines=False)
    for col in ("run", "state", "progress", "loss", "acc", "lr", "evaluation", "expected end", "newest checkpoint"):
        table.add_column(col, overflow="fold")
    for run in doc["runs"]:
        state = run["state"]
        label = f"[{STATE_STYLE.get(state, '')}]{state}[/]"
        label += _process(run)
        if run.get("health"):
            label += f"\n[{HEALTH_STYLE.get(run['health'], '')}]{run['health']}[/]"
        loss = _f(run.get("loss"))
        if "loss" in run.get("nonfinite", []):
            loss = "[bold red]nan/inf[/]"
        acc = _f(run["accuracy_ratio"] * 100, "{:.1f}%") if run.get("accuracy_ratio") is not None else "—"
        newest = run.get("newest_checkpoint")
        table.add_row(
            run["run"] + (f"\n[dim]{run['source']}[/]" if run.get("source") else ""),
            label,
            _progress(run),
            loss,
            acc,
            _f(run.get("learning_rate"), "{:.2e}"),
            _last_eval(run),
            _when(run.get("expected_completion_timestamp_seconds"), now) if state == "running" else "—",
            newest.replace("\\", "/").rsplit("/", 1)[-1] if newest else "—",
        )
    if not doc["runs"]:
        console.print("No runs found (looked for MMEngine <ts>/<ts>.log and MMDetection 2.x <ts>.log files).")
    else:
        console.print(table)
    for run in doc["runs"]:
        for cond in run.get("conditions") or []:
            style = {"critical": "bold red", "warning": "yellow"}.get(cond.get("severity"), "dim")
            console.print(f"[{style}]{cond.get('severity')}[/] {cond.get('alert')}: {cond.get('summary')}")
    if doc.get("gpu_error") and not doc.get("gpus"):
        console.print(f"[dim]GPUs: {doc['gpu_error']}[/]")
    if doc.get("gpus"):
        gpu_table = Table(title="GPUs", title_justify="left")
        for col in ("gpu", "name", "util", "memory", "temp", "power", "runs"):
            gpu_table.add_column(col)
        for g in doc["gpus"]:
            mem = "—"
            if g.get("memory_used_bytes") is not None and g.get("memory_total_bytes"):
                mem = f"{g['memory_used_bytes'] / 2**30:.1f}/{g['memory_total_bytes'] / 2**30:.1f} GiB"
            gpu_table.add_row(
                str(g.get("index")), g.get("name") or "—",
                _f(g["utilization_ratio"] * 100, "{:.0f}%") if g.get("utilization_ratio") is not None else "—",
                mem, _f(g.get("temperature_celsius"), "{:.0f} °C"), _f(g.get("power_watts"), "{:.0f} W"),
                ", ".join(g.get("runs") or []) or "—",
            )
        console.print(gpu_table)
