"""What a notification says: the alert, the run and the host, and what to do (for red: the last log lines, the
newest checkpoint, the resume command, the batch-size hint - all in the condition's description). Pure."""

from __future__ import annotations

from trainwarden.model import Condition, RunReport, timefmt

ICON = {"critical": "RED", "warning": "YELLOW", "info": "INFO"}
# apprise's notify type, which chat targets colour and prioritise by (Slack, Discord, Telegram, ntfy, Matrix, ...)
APPRISE_TYPE = {"critical": "failure", "warning": "warning", "info": "info"}
TYPE_ORDER = ("failure", "warning", "info", "success")  # worst first: a combined message leads with its worst
MAX_BODY = 12000  # chat targets truncate long messages; keep the end of the log tail


def run_facts(run: RunReport) -> dict:
    """The part of a run a message needs (what the outbox stores)."""
    facts = {"run": run.run, "work_dir": run.work_dir, "state": run.state.value,
             "health": run.health.value if run.health else None, "epoch": run.epoch, "max_epochs": run.max_epochs,
             "iteration": run.iteration, "max_iterations": run.max_iterations, "loss": run.loss,
             "newest_checkpoint": run.newest_checkpoint, "eval_key": run.eval_key, "verdict": run.verdict}
    evals = [e for e in run.evaluations if e.value(run.eval_key) is not None]
    if evals:
        facts["last_evaluation"] = {"epoch": evals[-1].epoch, "value": evals[-1].value(run.eval_key)}
    return facts


def _stamp(ts: float | None) -> str:
    return timefmt.local(ts, "%Y-%m-%d %H:%M:%S", missing="unknown")


def render(kind: str, condition: Condition, run: dict | None, host: str, log_tail: list[str] | None = None,
           resolved_at: float | None = None) -> tuple[str, str]:
    severity = condition.severity.value
    where = f"{condition.run} on {host}" if condition.run else host
    if kind == "resolved":
        title = f"[RESOLVED] {condition.alert} - {where}"
    else:
        title = f"[{ICON.get(severity, severity.upper())}] {condition.alert} - {where}"
    lines = [condition.summary, ""]
    if kind == "resolved":
        lines.append(f"Resolved at {_stamp(resolved_at)} (active since {_stamp(condition.since)}).")
    else:
        lines += [condition.description, ""]
    if run:
        progress = f"epoch {run.get('epoch')}/{run.get('max_epochs') or '?'}" if run.get("epoch") is not None else (
            f"iteration {run.get('iteration')}/{run.get('max_iterations') or '?'}")
        loss = f", loss {run['loss']:.4f}" if isinstance(run.get("loss"), float) else ""
        ev = run.get("last_evaluation")
        ev_text = f", {run.get('eval_key')} {ev['value']:.4f}" if ev and ev.get("value") is not None else ""
        lines.append(f"Run {run.get('run')} ({run.get('work_dir')}): {run.get('state')}, {progress}{loss}{ev_text}")
    lines.append(f"Host {host} · severity {severity} · runbook {condition.runbook}")
    if log_tail and kind != "resolved":
        lines += ["", f"Last {len(log_tail)} log lines:", *log_tail]
    body = "\n".join(lines)
    if len(body) > MAX_BODY:
        body = body[: MAX_BODY // 3] + "\n[…]\n" + body[-(MAX_BODY * 2 // 3):]
    return title, body


def notify_type(kind: str | None, severity: str) -> str:
    """The apprise type of a message: a resolved notice is `success` whatever it resolves; else its severity's."""
    return "success" if kind == "resolved" else APPRISE_TYPE.get(severity, "info")


def urgency(message: dict) -> tuple[int, float]:
    """Sort key, most urgent first: a firing red before yellow, notes, then resolved notices; older first."""
    return TYPE_ORDER.index(notify_type(message.get("kind"), message.get("severity", "info"))), message.get("created", 0)


def batch_type(messages: list[dict]) -> str:
    """A combined message's apprise type: its worst member's."""
    return min((notify_type(m.get("kind"), m.get("severity", "info")) for m in messages), key=TYPE_ORDER.index)


def render_batch(messages: list[dict]) -> tuple[str, str]:
    """Many messages for one target at once (a storm, or a target back after an outage): one combined message,
    led by its most urgent member (its title lists the first three)."""
    messages = sorted(messages, key=urgency)
    titles = [m["title"] for m in messages]
    title = f"[trainwarden] {len(messages)} notifications: " + "; ".join(titles[:3]) + ("; …" if len(titles) > 3 else "")
    # every message keeps its heading and a fair share of its body: a cut at the end would drop whole messages
    # that are then marked delivered
    share = max(200, min(1500, MAX_BODY * 3 // max(1, len(messages)) - 80))
    parts = []
    for m in messages:
        parts += [f"== {m['title']} ({_stamp(m.get('created'))})", m["body"][:share], ""]
    return title, "\n".join(parts)
