"""The agent's status page at `/`: every run with its health colour, progress, expected end, last evaluation
against its target, small inline plots and active conditions; the GPUs. Self-contained (inline CSS and SVG, no
script, no external asset) and refreshing itself."""

from __future__ import annotations

import html
import time
from urllib.parse import quote

from trainwarden import __version__
from trainwarden.model import RunReport, RunState, Severity, StatusReport, timefmt
from trainwarden.outputs.views.cells import (
    MISSING,
    UNKNOWN,
    GpuRow,
    evaluated,
    fmt,
    gpu_rows,
    newest_checkpoint,
    percent,
    position,
)
from trainwarden.outputs.views.svg import sparkline

COLORS = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828", None: "#9e9e9e"}


def _run_card(run: RunReport) -> str:
    e = html.escape
    health = run.health.value if run.health else None
    progress = run.progress_ratio
    where = position(run, short=True)
    if progress is not None:
        where += f" · {percent(progress)}"
    key = run.eval_key
    evals = evaluated(run)
    last_eval = "no evaluation yet"
    if evals:
        last = evals[-1]
        verdict = "" if last.met is None else (" ✔ met" if last.met else " ✘ below")
        target = f" (target {last.target:.2f}{verdict})" if last.target is not None else ""
        test = " (test)" if last.mode == "test" else ""  # a test result is shown only without a validation
        last_eval = f"{e(key or '')} {last.value(key):.4f}{test}{target}"
    conds = "".join(f"<li class='{e(c.severity.value)}'>{e(c.alert)}: {e(c.summary)}</li>"
                    for c in run.conditions if c.severity != Severity.INFO)
    eta = timefmt.local(run.expected_completion_timestamp_seconds) if run.state == RunState.RUNNING else MISSING
    color = COLORS.get(health, "#9e9e9e")
    return f"""<section class="run" style="border-left-color:{color}">
<h2>{e(run.run)} <span class="badge" style="background:{color}">{e(health or UNKNOWN)}</span>
<small>{e(run.state.value)}{' · ' + e(str(run.verdict)) if run.verdict else ''}</small></h2>
<div class="bar"><div style="width:{(progress or 0) * 100:.1f}%"></div></div>
<p>{e(where)} · expected end {eta} · loss {fmt(run.loss)} · {last_eval} · newest checkpoint {e(newest_checkpoint(run))}</p>
<p class="plots"><span>loss (last logged values) {sparkline([v for v in run.loss_recent if v is not None])}</span>
<span>{e(key or 'evaluation')} per evaluation {sparkline([x.value(key) for x in evals], color='#2e7d32')}</span></p>
<ul class="conds">{conds}</ul>
<p class="links"><a href="/api/runs/{quote(run.run, safe='')}/log?lines=50">last 50 log lines</a>
· {e(run.work_dir)}</p></section>"""


def _gpu_row(row: GpuRow) -> str:
    e = html.escape
    return (f"<tr><td>{e(row.index)}</td><td>{e(row.name)}</td><td>{e(row.utilization)}</td><td>{e(row.memory)}</td>"
            f"<td{' class=hot' if row.hot else ''}>{e(row.temperature)}</td><td>{e(row.runs)}</td></tr>")


def status_page(report: StatusReport) -> bytes:
    e = html.escape
    cards = "\n".join(_run_card(r) for r in report.runs) or "<p>No runs found yet.</p>"
    gpus = "".join(_gpu_row(row) for row in gpu_rows(report.gpus, report.policy.gpu_temperature_max_celsius))
    gpu_html = (f"<h2>GPUs</h2><table><tr><th>gpu</th><th>name</th><th>util</th><th>memory</th><th>temp</th><th>runs</th></tr>"
                f"{gpus}</table>") if gpus else f"<p class='muted'>GPUs: {e(report.gpu_error or 'none')}</p>"
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>trainwarden</title><style>
body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}}
.run{{border-left:8px solid #999;padding:.3em 1em;margin:1em 0;background:#fafafa}}
.badge{{color:#fff;border-radius:4px;padding:1px 8px;font-size:.8em}} small{{color:#666;font-weight:normal}}
.bar{{background:#e0e0e0;height:8px;border-radius:4px}} .bar div{{background:#1976d2;height:8px;border-radius:4px}}
.plots span{{display:inline-block;margin-right:2em;color:#555;font-size:.85em}} .plots svg{{vertical-align:middle}}
.conds li.critical,.hot{{color:#c62828}} .conds li.warning{{color:#b26a00}} .muted{{color:#777}}
table{{border-collapse:collapse}} td,th{{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}}
</style></head><body><h1>trainwarden</h1>
{cards}
{gpu_html}
<p class="muted"><a href="/metrics">/metrics</a> · <a href="/api/runs">/api/runs</a> · <a href="/healthz">/healthz</a>
· trainwarden {e(__version__)} · {timefmt.local(time.time(), '%Y-%m-%d %H:%M:%S')} · refreshes every 30 s</p></body></html>"""
    return page.encode("utf-8")
