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


def run_panel(run: dict) -> Panel:
    policy = run.get("policy") or {}
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim")
    grid.add_column()
    ratio = run.get("progress_ratio") or 0.0
    where = (f"epoch {run.get('epoch')}/{run.get('max_epochs') or '?'} [{run.get('epoch_iteration')}/"
             f"{run.get('iterations_per_epoch')}]" if run.get("epoch") is not None
             else f"iter {run.get('iteration')}/{run.get('max_iterations') or '?'}")
    grid.add_row("progress", Group(ProgressBar(total=1.0, completed=ratio, width=30), Text(f"{where} {ratio * 100:.1f}%")))
    eta = run.get("expected_completion_timestamp_seconds")
    grid.add_row("expected end", time.strftime("%m-%d %H:%M", time.localtime(eta)) if eta and run["state"] == "running"
                 else "—")
    recent = [v for v in (run.get("loss_recent") or [])][-10:]
    trend = run.get("loss_trend") or {}
    band = policy.get("loss_range")
    loss = run.get("loss")
    bad_loss = None if loss is None else (loss > policy.get("loss_max", 1.0) or (band and not band[0] <= loss <= band[1]))
    trend_text = ""
    if trend.get("rise_ratio") is not None:
        trend_text = f" {'falling' if trend.get('falling') else 'not falling'}, {trend['rise_ratio'] * 100:+.0f}% short-term"
    grid.add_row("loss", Text.assemble(_val(loss, ".4f", bad_loss), f"  {spark(recent)}{trend_text}",
                                       f"  healthy {band[0]}-{band[1]}" if band else ""))
    comps = "  ".join(f"{k.replace('loss_', '')} {v:.4f}" for k, v in (run.get("losses") or {}).items() if v is not None)
    grid.add_row("components", comps or "—")
    acc = run.get("accuracy_ratio")
    grad = run.get("grad_norm")
    grid.add_row("acc / grad", Text.assemble(
        _val(None if acc is None else acc * 100, ".1f", None if acc is None else acc < policy.get("accuracy_min_ratio", 0.9),
             "%"),
        "  /  ", _val(grad, ".2f", None if grad is None else grad > policy.get("grad_norm_max", 10))))
    key = run.get("eval_key")
    evals = [e for e in run["evaluations"] if key in e["metrics"] and e["metrics"][key] is not None][-6:]
    history = Text()
    for e in evals:
        where_e = e["epoch"] if e["epoch"] is not None else e["iteration"]
        style = "" if e["met"] is None else ("green" if e["met"] else "red")
        history.append(f"{where_e}:{e['metrics'][key]:.4f} ", style=style)
    grid.add_row(key or "evaluation", history if evals else Text("no evaluation yet", style="dim"))
    best = run.get("best") or {}
    grid.add_row("checkpoints", f"{len(run['checkpoints'])} files, newest "
                 f"{(run.get('newest_checkpoint') or '—').replace(chr(92), '/').rsplit('/', 1)[-1]}, best "
                 f"{best.get('checkpoint') or '—'}")
    for c in run.get("conditions", []):
        if c["severity"] != "info":
            grid.add_row(Text(c["severity"], style="bold red" if c["severity"] == "critical" else "yellow"),
                         Text(c["summary"]))
    title = Text.assemble((run["run"], "bold"), "  ", (run.get("health") or "?", HEALTH.get(run.get("health"), "")),
                          f"  {run['state']}", f"  {run.get('verdict') or ''}")
    return Panel(grid, title=title, border_style=HEALTH.get(run.get("health"), "white"))


def gpu_table(gpus: list[dict]) -> Table:
    table = Table(title="GPUs", title_justify="left")
    for col in ("gpu", "util", "memory", "temp", "power", "runs"):
        table.add_column(col)
    for g in gpus:
        temp = g.get("temperature_celsius")
        table.add_row(str(g["index"]),
                      "—" if g.get("utilization_ratio") is None else f"{g['utilization_ratio'] * 100:.0f}%",
                      "—" if g.get("memory_used_bytes") is None else
                      f"{g['memory_used_bytes'] / 2**30:.1f}/{(g.get('memory_total_bytes') or 0) / 2**30:.1f} GiB",
                      Text("—" if temp is None else f"{temp:.0f} °C", style="red" if temp and temp >= 80 else ""),
                      "—" if g.get("power_watts") is None else f"{g['power_watts']:.0f} W",
                      ", ".join(g.get("runs") or []))
    return table


def render(doc: dict):
    panels = [run_panel(r) for r in doc["runs"]]
    parts: list = []
    for i in range(0, len(panels), 2):  # side by side, two a row (Plan A and Plan B)
        row = Table.grid(expand=True, padding=(0, 1))
        for _ in panels[i:i + 2]:
            row.add_column(ratio=1)
        row.add_row(*panels[i:i + 2])
        parts.append(row)
    if not panels:
        parts.append(Text("No runs found yet."))
    if doc.get("gpus"):
        parts.append(gpu_table(doc["gpus"]))
    parts.append(Text(f"{time.strftime('%H:%M:%S')}  q or Ctrl-C quits", style="dim"))
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


def live(fetch: Callable[[], dict], interval: float, console, once: bool = False) -> None:
    if once:
        console.print(render(fetch()))
        return
    with _Keys() as keys, Live(render(fetch()), console=console, auto_refresh=False, screen=False) as view:
        while True:
            if keys.wait_for_quit(interval):
                return
            view.update(render(fetch()), refresh=True)
