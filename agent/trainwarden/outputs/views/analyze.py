"""`trainwarden analyze`: the detailed analysis of one run (the user's monitor 2) as text, JSON or one
self-contained HTML file with plots (inline SVG: no network, no scripts)."""

from __future__ import annotations

import html
import math
import time

from trainwarden.judge.advice import RunPlace, checkpoint_text, next_steps
from trainwarden.judge.policy import Policy
from trainwarden.judge.verdict import plan_b
from trainwarden.model import Health, RunReport, RunSnapshot, Severity, timefmt
from trainwarden.model.codec import to_plain
from trainwarden.outputs.views.cells import UNKNOWN, position_of
from trainwarden.outputs.views.svg import line_chart

OOM_ALERT = "TrainingCUDAOutOfMemory"


def place_of_report(run: RunReport) -> RunPlace:
    return RunPlace(run.work_dir, run.config, run.framework, run.newest_checkpoint, run.batch_size, run.last_saved)


def red_because(run: RunReport) -> str | None:
    """Why a run is red when its evaluations alone would read well (a stalled run whose last mAP met the goal)."""
    if run.health != Health.RED or run.verdict not in ("success", "partial", "in_progress", None):
        return None
    pages = [c.alert for c in run.conditions if c.severity == Severity.CRITICAL]
    return f"red because of {', '.join(pages)}, not because of its evaluations" if pages else None


def analysis(run: RunReport, snap: RunSnapshot, policy: Policy) -> dict:
    """Everything the report shows, as plain data (also `analyze --json`)."""
    trend = run.loss_trend
    band = run.policy.loss_range if run.policy else None
    trend_verdict = None
    if trend:
        where = (f"{'inside' if band[0] <= trend.mean_100 <= band[1] else 'outside'} the healthy range {band[0]}-{band[1]}"
                 if band else "no healthy range configured")
        trend_verdict = (f"mean {trend.mean_100:.4f} over the last {trend.values} logged values, "
                         f"{'falling' if trend.falling else 'not falling'} ({trend.slope_per_log:+.2e} per log), {where}")
    history = [{"iteration": p.iteration, "timestamp": p.timestamp, **p.values, **dict.fromkeys(p.nonfinite)}
               for p in snap.history]  # JSON has no NaN: a nan/inf value is null
    place = place_of_report(run)
    by_epoch = any(e.epoch is not None for e in run.evaluations) or run.epoch is not None
    # a profile's Plan B, for the metric it was written for only (the neutral defaults have none)
    plan_b_text = (plan_b(policy).split(": ", 1)[1]
                   if policy.plan_b_command and run.policy and run.policy.targets_apply and any(c.met for c in run.plan_b)
                   else None)
    oom = any(c.alert == OOM_ALERT for c in run.conditions)
    return {
        "run": run.run, "work_dir": run.work_dir, "state": run.state.value,
        "health": run.health.value if run.health else None, "unit": "epoch" if by_epoch else "iteration",
        "red_because": red_because(run), "newest_checkpoint": checkpoint_text(place),
        "progress": {k: getattr(run, k) for k in ("epoch", "max_epochs", "epoch_iteration", "iterations_per_epoch",
                                                  "iteration", "max_iterations", "progress_ratio",
                                                  "expected_completion_timestamp_seconds")},
        "loss": {"latest": run.loss, "components": dict(run.losses), "accuracy_ratio": run.accuracy_ratio,
                 "grad_norm": run.grad_norm, "learning_rate": run.learning_rate, "trend": to_plain(trend),
                 "trend_verdict": trend_verdict},
        "eval_key": run.eval_key,
        "evaluations": to_plain(run.evaluations),
        "baselines": dict(run.policy.baselines) if run.policy else {},
        "goal": run.policy.goal if run.policy else None,
        "loss_band": list(band) if band else None,
        "loss_max": run.policy.loss_max if run.policy else policy.loss_max,
        "verdict": {"verdict": run.verdict, "rule": run.verdict_rule, "reasons": list(run.verdict_reasons),
                    "advice": run.advice},
        "plan_b": to_plain(run.plan_b),
        "early_stop": to_plain(run.early_stop_analysis),
        "conditions": [{"alert": c.alert, "severity": c.severity.value, "summary": c.summary} for c in run.conditions],
        "next_step": {
            "advice": run.advice,
            "commands": next_steps(run.state, place, policy, oom=oom, plan_b=plan_b_text, verdict=run.verdict),
        },
        "history": history,
    }


def _fmt(v, spec: str = ".4f") -> str:
    """A value in a sentence: an unknown one (never logged, or nan/inf) reads as unknown."""
    return UNKNOWN if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def progress_text(p: dict) -> str:
    where = position_of(p["epoch"], p["max_epochs"], p["epoch_iteration"], p["iterations_per_epoch"], p["iteration"],
                        p["max_iterations"])
    if where is None:
        return "no training line read yet"
    if p["epoch"] is not None and p["iteration"] is not None:
        where += f", iteration {p['iteration']}/{p['max_iterations'] or '?'}"
    ratio = p["progress_ratio"]
    return where + ("" if ratio is None else f" ({ratio * 100:.1f}%)")


def loss_text(loss: dict) -> str:
    comps = ", ".join(f"{k} {_fmt(v)}" for k, v in (loss["components"] or {}).items())
    parts = [f"loss {_fmt(loss['latest'])}" + (f" ({comps})" if comps else "")]
    if loss["accuracy_ratio"] is not None:
        parts.append(f"acc {loss['accuracy_ratio'] * 100:.1f}%")
    if loss["grad_norm"] is not None:
        parts.append(f"grad_norm {_fmt(loss['grad_norm'], '.2f')}")
    if loss["learning_rate"] is not None:
        parts.append(f"lr {_fmt(loss['learning_rate'], '.2e')}")
    return "; ".join(parts)


def _where(e: dict) -> str:
    if e["epoch"] is not None:
        return f"epoch {e['epoch']}"
    return f"iteration {e['iteration']}" if e["iteration"] is not None else "after training"


def _verdict(v: dict) -> str:
    return f"{v['verdict'] or 'none yet'}" + (f" - {v['rule']}" if v["rule"] else "")


def commands_not_in_advice(a: dict) -> dict[str, str]:
    """The next-step commands that the advice text above them does not already spell out (each step once)."""
    advice = a["next_step"]["advice"] or ""
    return {label: command for label, command in a["next_step"]["commands"].items() if command not in advice}


def render_text(a: dict, console) -> None:
    console.print(f"[bold]{a['run']}[/]  {a['state']}  health [bold]{a['health'] or UNKNOWN}[/]  ({a['work_dir']})")
    console.print(f"progress: {progress_text(a['progress'])}")
    loss = a["loss"]
    console.print(loss_text(loss))
    console.print(f"loss trend: {loss['trend_verdict'] or 'not enough logged values yet'}")
    console.print(f"newest checkpoint: {a['newest_checkpoint']}")
    goal = "" if a["goal"] is None else f", goal {a['goal']}"
    console.print(f"\n[bold]evaluations[/] ({a['eval_key'] or 'no evaluated key'}{goal}):")
    for e in a["evaluations"]:
        value = e["metrics"].get(a["eval_key"])
        mark = "" if e["met"] is None else (" [green]met[/]" if e["met"] else " [red]below[/]")
        target = "" if e["target"] is None else f" target {_fmt(e['target'], '.2f')}"
        console.print(f"  {_where(e)} ({e['mode']}): {_fmt(value)}{target}{mark}")
    for name, value in a["baselines"].items():
        console.print(f"  baseline {name}: {value}")
    v = a["verdict"]
    console.print(f"\n[bold]verdict[/]: {_verdict(v)}")
    if a["red_because"]:
        console.print(f"[bold red]{a['red_because']}[/]")
    for check in a["plan_b"]:
        console.print(f"  Plan B condition {'[red]MET[/]' if check['met'] else 'not met'}: {check['condition']} "
                      f"({check['detail']})")
    es = a["early_stop"]
    if es:
        console.print(f"\n[bold]early stop[/]: counter {_fmt(es['counter'], '')}/{_fmt(es['patience'], '')}, "
                      f"threshold {_fmt(es['threshold'], '')}, triggered {'yes' if es['triggered'] else 'no'}, "
                      f"lr {_fmt(es['learning_rate'], '.2e')}")
        for hint in es["misfire_hints"]:
            console.print(f"  hint: {hint}")
        for step in es["recovery"]:
            console.print(f"  recovery: {step}")
    console.print(f"\n[bold]next step[/]: {a['next_step']['advice'] or 'nothing to do'}")
    for label, command in commands_not_in_advice(a).items():
        console.print(f"  {label}: {command}")


def render_html(a: dict) -> str:
    hist = a["history"]
    loss_series = [("loss", [(h["iteration"], h.get("loss")) for h in hist if h.get("iteration") is not None])]
    for comp in (a["loss"]["components"] or {}):
        loss_series.append((comp, [(h["iteration"], h.get(comp)) for h in hist if h.get("iteration") is not None]))
    band_values = tuple(a["loss_band"]) if a.get("loss_band") else None
    key = a["eval_key"]
    key_name = key or "evaluation"  # a run with no evaluated key yet
    evals = [e for e in a["evaluations"] if e["mode"] == "val" and key in e["metrics"]]
    x_of = (lambda e: e["epoch"]) if evals and evals[0]["epoch"] is not None else (lambda e: e["iteration"])
    metric = [(key_name, [(x_of(e), e["metrics"][key]) for e in evals])]
    if any(e["target"] is not None for e in evals):
        metric.append(("target", [(x_of(e), e["target"]) for e in evals if e["target"] is not None]))
    hlines = [(f"baseline: {name}", value, "#9467bd") for name, value in a["baselines"].items()]
    if a.get("goal") is not None:
        hlines.append(("goal", a["goal"], "#2ca02c"))
    lr = [("lr", [(h["iteration"], h.get("lr")) for h in hist if h.get("iteration") is not None])]
    charts = [
        line_chart(loss_series, "Loss and components over iterations", band=band_values, band_label="healthy loss",
                   hlines=[("explosion", a["loss_max"], "#d62728")]
                   if a["loss_max"] is not None and any((h.get("loss") or 0) > 0.8 * a["loss_max"] for h in hist) else [],
                   x_label="iteration"),
        line_chart(metric, f"{key_name} per {'epoch' if evals and evals[0]['epoch'] is not None else 'iteration'}",
                   hlines=hlines, x_label="epoch" if evals and evals[0]["epoch"] is not None else "iteration"),
        line_chart(lr, "Learning rate over iterations", x_label="iteration", log_y=True),
    ]
    rows = "".join(
        f"<tr><td>{html.escape(str(e['epoch'] if e['epoch'] is not None else e['iteration']))}</td>"
        f"<td>{_fmt(e['metrics'].get(key))}</td><td>{'' if e['target'] is None else _fmt(e['target'], '.2f')}</td>"
        f"<td>{'' if e['met'] is None else ('met' if e['met'] else 'below')}</td></tr>" for e in evals)
    checks = "".join(f"<li>{'<b>met</b>' if c['met'] else 'not met'}: {html.escape(c['condition'])} "
                     f"({html.escape(c['detail'])})</li>" for c in a["plan_b"])
    commands = "".join(f"<dt>{html.escape(k)}</dt><dd><code>{html.escape(v)}</code></dd>"
                       for k, v in commands_not_in_advice(a).items())
    es = a["early_stop"]
    es_html = ""
    if es:
        es_html = (f"<h2>Early stop</h2><p>counter {_fmt(es['counter'], '')}/{_fmt(es['patience'], '')}, threshold "
                   f"{_fmt(es['threshold'], '')}, triggered {'yes' if es['triggered'] else 'no'}</p><ul>"
                   + "".join(f"<li>{html.escape(h)}</li>" for h in es["misfire_hints"] + es["recovery"]) + "</ul>")
    conds = "".join(f"<li class='{c['severity']}'>{html.escape(c['severity'])} {html.escape(c['alert'])}: "
                    f"{html.escape(c['summary'])}</li>" for c in a["conditions"])
    v = a["verdict"]
    unit = "epoch" if evals and evals[0]["epoch"] is not None else "iteration"  # what the table's first column holds
    because = f"<p class='red'>{html.escape(a['red_because'])}</p>" if a.get("red_because") else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>trainwarden analysis: {html.escape(a['run'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}}
.red,.critical{{color:#b00}} .yellow,.warning{{color:#a60}} .green{{color:#070}} code{{background:#f4f4f4;padding:2px 4px}}
table{{border-collapse:collapse}} td,th{{padding:2px 10px;border-bottom:1px solid #ddd}}</style></head><body>
<h1>{html.escape(a['run'])} <span class="{html.escape(a['health'] or '')}">{html.escape(a['health'] or UNKNOWN)}</span></h1>
<p>{html.escape(a['state'])} · {html.escape(progress_text(a['progress']))} ·
{html.escape(a['work_dir'])} · written {timefmt.local(time.time())}</p>
<p>{html.escape(loss_text(a['loss']))} · newest checkpoint: {html.escape(a['newest_checkpoint'])}</p>
<h2>Verdict: {html.escape(v['verdict'] or 'none yet')}</h2><p>{html.escape(v['rule'] or '')}</p>{because}
<p><b>Next step:</b> {html.escape(a['next_step']['advice'] or 'nothing to do').replace(chr(10), '<br>')}</p><dl>{commands}</dl>
<ul>{conds}</ul>
<h2>Loss</h2><p>{html.escape(a['loss']['trend_verdict'] or 'not enough logged values yet')}</p>
{charts[0]}
<h2>Evaluations</h2>{charts[1]}<table><tr><th>{unit}</th><th>{html.escape(key_name)}</th><th>target</th><th></th></tr>{rows}</table>
<h2>Plan B start conditions</h2><ul>{checks}</ul>{es_html}
<h2>Learning rate</h2>{charts[2]}
</body></html>"""
