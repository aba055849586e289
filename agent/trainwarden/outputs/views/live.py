"""`trainwarden live`: a terminal view that redraws in place (the user's monitor 1), in rich: per run a progress
bar, the expected end, the last 10 logged losses as a sparkline with the trend and the healthy band, components,
accuracy and grad norm coloured by the policy, the validation history against the targets, checkpoints, active
conditions; the GPUs. Runs side by side (Plan A and Plan B). Quits on q or Ctrl-C; sleeps between refreshes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from trainwarden.model import RunReport, RunState, Severity, StatusReport, timefmt
from trainwarden.outputs.views.cells import MISSING, UNKNOWN, evaluated, file_name, gpu_rows, newest_checkpoint, percent, position

SPARK = "▁▂▃▄▅▆▇█"
HEALTH = {"green": "green", "yellow": "yellow", "red": "bold red"}


def spark(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(7, int((v - lo) / span * 7.999))] for v in values)


def _val(value, spec: str, bad: bool | None = None, suffix: str = "") -> Text:
    if value is None:
        return Text("—", style="dim")
    return Text(format(value, spec) + suffix, style="red" if bad else ("green" if bad is False else ""))


def run_panel(run: RunReport) -> Panel:
    policy = run.policy
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim")
    grid.add_column()
    ratio = run.progress_ratio
    known = "" if ratio is None else f" {percent(ratio)}"  # an unknown share is not drawn as 0%
    grid.add_row("progress", Group(ProgressBar(total=1.0, completed=ratio or 0.0, width=30),
                                   Text(f"{position(run)}{known}")))
    eta = run.expected_completion_timestamp_seconds
    grid.add_row("expected end", timefmt.local(eta, "%m-%d %H:%M") if eta and run.state == RunState.RUNNING else MISSING)
    recent = list(run.loss_recent)[-10:]
    trend = run.loss_trend
    band = policy.loss_range if policy else None
    loss = run.loss
    loss_max = policy.loss_max if policy else None
    bad_loss = None if loss is None else (
        (loss_max is not None and loss > loss_max) or bool(band and not band[0] <= loss <= band[1]))
    trend_text = ""
    if trend is not None and trend.rise_ratio is not None:
        trend_text = f" {'falling' if trend.falling else 'not falling'}, {trend.rise_ratio * 100:+.0f}% short-term"
    grid.add_row("loss", Text.assemble(_val(loss, ".4f", bad_loss), f"  {spark(recent)}{trend_text}",
                                       f"  healthy {band[0]}-{band[1]}" if band else ""))
    comps = "  ".join(f"{k.replace('loss_', '')} {v:.4f}" for k, v in run.losses.items() if v is not None)
    grid.add_row("components", comps or MISSING)
    acc, grad = run.accuracy_ratio, run.grad_norm
    acc_min = policy.accuracy_min_ratio if policy else None  # None: the policy sets no limit
    grad_max = policy.grad_norm_max if policy else None
    acc_low = None if acc is None or acc_min is None else acc < acc_min
    grad_high = None if grad is None or grad_max is None else grad > grad_max
    grid.add_row("acc / grad", Text.assemble(_val(None if acc is None else acc * 100, ".1f", acc_low, "%"), "  /  ",
                                             _val(grad, ".2f", grad_high)))
    key = run.eval_key
    evals = evaluated(run)[-6:]
    history = Text()
    for e in evals:
        at = e.epoch if e.epoch is not None else (e.iteration if e.iteration is not None else e.mode)
        style = "" if e.met is None else ("green" if e.met else "red")
        history.append(f"{at}:{e.value(key):.4f} ", style=style)
    grid.add_row(key or "evaluation", history if evals else Text("no evaluation yet", style="dim"))
    best = file_name(run.best.checkpoint) if run.best and run.best.checkpoint else MISSING
    grid.add_row("checkpoints", f"{len(run.checkpoints)} files, newest {newest_checkpoint(run)}, best {best}")
    for c in run.conditions:
        if c.severity != Severity.INFO:
            grid.add_row(Text(c.severity.value, style="bold red" if c.severity == Severity.CRITICAL else "yellow"),
                         Text(c.summary))
    health = run.health.value if run.health else None
    plan = f" ({policy.plan_label})" if policy and policy.plan_label else ""
    title = Text.assemble((run.run, "bold"), plan, "  ", (health or UNKNOWN, HEALTH.get(health, "")),
                          f"  {run.state}", f"  {run.verdict or ''}")
    return Panel(grid, title=title, border_style=HEALTH.get(health, "white"))


def gpu_table(report: StatusReport) -> Table:
    table = Table(title="GPUs", title_justify="left")
    for col in ("gpu", "util", "memory", "temp", "power", "runs"):
        table.add_column(col)
    for row in gpu_rows(report.gpus, report.policy.gpu_temperature_max_celsius):
        table.add_row(row.index, row.utilization, row.memory, Text(row.temperature, style="red" if row.hot else ""),
                      row.power, row.runs)
    return table


def render(report: StatusReport):
    panels = [run_panel(r) for r in report.runs]
    parts: list = []
    for i in range(0, len(panels), 2):  # side by side, two a row (Plan A and Plan B)
        row = Table.grid(expand=True, padding=(0, 1))
        for _ in panels[i:i + 2]:
            row.add_column(ratio=1)
        row.add_row(*panels[i:i + 2])
        parts.append(row)
    if not panels:
        parts.append(Text("No runs found yet."))
    if report.gpus:
        parts.append(gpu_table(report))
    parts.append(Text(f"{timefmt.local(time.time(), '%H:%M:%S')}  q or Ctrl-C quits", style="dim"))
    return Group(*parts)


class _Keys:
    """Reads single key presses without waiting for Enter: termios on POSIX, msvcrt on Windows."""

    def __enter__(self):
        self.old = None
        if os.name != "nt" and sys.stdin.isatty():
            import termios
            import tty

            self.old = termios.tcgetattr(sys.stdin.fileno())
            tty.setcbreak(sys.stdin.fileno())
        return self

    def __exit__(self, *exc) -> None:
        if self.old is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.old)

    def wait_for_quit(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if q was pressed."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if os.name == "nt":
                import msvcrt

                if msvcrt.kbhit() and msvcrt.getwch().lower() == "q":
                    return True
                time.sleep(0.1)
            elif sys.stdin.isatty():
                import select

                ready, _, _ = select.select([sys.stdin], [], [], max(0.0, deadline - time.monotonic()))
                if ready and sys.stdin.read(1).lower() == "q":
                    return True
            else:
                time.sleep(max(0.0, deadline - time.monotonic()))
        return False


def live(fetch: Callable[[], StatusReport], interval: float, console, once: bool = False) -> None:
    if once:
        console.print(render(fetch()))
        return
    with _Keys() as keys, Live(render(fetch()), console=console, auto_refresh=False, screen=False) as view:
        while True:
            if keys.wait_for_quit(interval):
                return
            view.update(render(fetch()), refresh=True)
