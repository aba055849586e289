"""The `demo` command: start an agent on a temporary folder, replay a run into it, say where to look."""

from __future__ import annotations

import argparse
import errno
import tempfile
import threading
from pathlib import Path

from trainwarden.app.agent import Agent
from trainwarden.app.config import parse_listen_address
from trainwarden.app.demo import DemoPlan, DemoWriter, replay
from trainwarden.app.profiles import guide_policy
from trainwarden.outputs.views.status_table import make_console, render_status


def _start_agent(root: Path, listen: str, console, notifier=None) -> Agent:
    host, port = parse_listen_address(listen)
    policy = guide_policy()  # the demo's run is the user's KAIST run: it is judged by the guide profile
    agent = Agent([root], host, port, policy=policy, poll_interval=0.5, rediscover_interval=1.0, notifier=notifier)
    try:
        agent.start()
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
            raise
        console.print(f"[yellow]{host}:{port} is taken (another agent?): using a free port instead[/]")
        agent = Agent([root], host, 0, policy=policy, poll_interval=0.5, rediscover_interval=1.0, notifier=notifier)
        agent.start()
    return agent


def run_demo(args: argparse.Namespace) -> int:
    console = make_console()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="trainwarden-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    plan = DemoPlan(max_epochs=max(1, args.epochs))
    pace = max(0.0, args.duration) / plan.total_lines
    writer = DemoWriter(root, plan, pace=pace)
    notifier = None
    if args.notify:
        from trainwarden.errors import UsageError
        from trainwarden.outputs.notify.service import Notifier
        from trainwarden.outputs.notify.targets import Target, unusable

        if problems := [f"--notify: {why}" for u in args.notify if (why := unusable(u))]:
            raise UsageError("; ".join(problems))  # before the run is written: a URL apprise cannot use, masked
        notifier = Notifier([Target(u) for u in args.notify], root / ".trainwarden-state", log_lines=20,
                            resolve_after_seconds=3)
    agent = _start_agent(root, args.listen_address, console, notifier)
    host, port = agent.address
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    console.print(f"[bold]trainwarden demo[/] - replaying a {plan.max_epochs}-epoch MMEngine run "
                  f"({plan.iterations_per_epoch} iterations per epoch) in about {args.duration:.0f} s, "
                  "judged by the guide profile (policy.profile: guide)")
    console.print(f"  run folder     {writer.work_dir}")
    console.print(f"  status page    {base}/")
    console.print(f"  metrics        {base}/metrics")
    console.print(f"  status JSON    {base}/api/runs")
    if notifier is not None:
        console.print(f"  notifications  {', '.join(t.name for t in notifier.targets.values())}")
    console.print("  in another terminal:")
    console.print(f"    trainwarden status --profile guide {root}")
    console.print(f"    trainwarden status {base}")
    console.print(f"    trainwarden tail {writer.work_dir} -n 20")
    console.print(f"    trainwarden live --profile guide {root} --interval 2")
    console.print(f"    trainwarden analyze --profile guide {writer.work_dir} --html analysis.html")

    stop = threading.Event()

    steps = [0]
    shown_alerts: list[set] = [set()]

    def on_step(kind: str) -> None:
        steps[0] += 1
        if kind == "evaluation":
            _progress_line(agent, console)
        elif steps[0] % 5 == 0:  # say when the agent's alerts change (the incident in epoch 3)
            runs = agent.status_document()["runs"]
            now_alerts = {(c["severity"], c["alert"], c["summary"]) for r in runs for c in r["conditions"]
                          if c["severity"] != "info"}
            names = {a[1] for a in now_alerts}
            if names != {a[1] for a in shown_alerts[0]}:
                for severity, alert, summary in sorted(now_alerts - shown_alerts[0]):
                    console.print(f"  [dim]agent sees[/] [{'bold red' if severity == 'critical' else 'yellow'}]"
                                  f"{alert}[/]: {summary}")
                for _, alert, _ in sorted(shown_alerts[0] - now_alerts):
                    if alert not in names:
                        console.print(f"  [dim]agent sees[/] {alert} resolved")
                shown_alerts[0] = now_alerts

    try:
        replay(writer, pace, on_step=on_step, stop=stop.is_set)
        agent.refresh(timeout=10)  # the last lines read and judged
        render_status(agent.status_report(), console)
        if notifier is not None:
            notifier.flush(timeout=15)
            console.print(f"{sum(notifier.sent.values())} notification(s) delivered.")
        if args.linger < 0:
            console.print(f"The agent keeps serving {base}/ - press Ctrl-C to stop.")
            agent.wait()
        elif args.linger > 0:
            agent.wait(timeout=args.linger)
    except KeyboardInterrupt:
        stop.set()
    finally:
        agent.stop()
    return 0


def _progress_line(agent: Agent, console) -> None:
    agent.refresh(timeout=5)  # the agent is a separate reader: what was just written, read
    for run in agent.status_document()["runs"]:
        evals = [e for e in run["evaluations"] if run.get("eval_key") in e["metrics"]]
        last = f", {run['eval_key']} {evals[-1]['metrics'][run['eval_key']]:.4f}" if evals else ""
        loss = f"{run['loss']:.4f}" if run.get("loss") is not None else "-"
        console.print(
            f"  [dim]agent sees[/] {run['run']}: {run['state']}, epoch {run.get('epoch')}/{run.get('max_epochs')}, "
            f"loss {loss}{last}, {len(run['checkpoints'])} checkpoint file(s)"
        )
