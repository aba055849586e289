"""Command line: sub-commands, flags in Prometheus exporter style, and the one place that turns exceptions into
exit codes. Heavy modules are imported inside the commands that need them (`status` needs no HTTP server).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from enum import IntEnum
from pathlib import Path

from trainwarden import __version__
from trainwarden.app.config import DEFAULT_LISTEN, ConfigError, load_config, parse_listen_address
from trainwarden.errors import NothingFound, UsageError

log = logging.getLogger("trainwarden")


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # a runtime failure: nothing to read, a remote agent unreachable, a port in use
    USAGE = 2  # bad flags or a bad config file
    RED = 3  # `status`: at least one run is red


# -- commands --------------------------------------------------------------------------------------------------
def cmd_watch(args: argparse.Namespace) -> ExitCode:
    from trainwarden.app.agent import Agent
    cfg = load_config(args.config_file, getattr(args, "profile", None))
    roots = [Path(p) for p in args.paths] + cfg.watch
    if not roots:
        raise UsageError("watch: give at least one PATH (here or as `watch:` in the config file)")
    missing = [str(p) for p in roots if not p.exists()]
    if missing:
        raise UsageError(f"watch: no such folder: {', '.join(missing)}")
    host, port = _listen(args.listen_address or cfg.listen_address)
    poll = args.poll_interval or cfg.poll_interval_seconds
    from trainwarden.app.config import default_state_dir
    from trainwarden.app.local import console_files
    from trainwarden.app.notifier import build_notifier
    from trainwarden.ingest.host.sources import HostSources
    from trainwarden.ingest.seen import FirstSeen

    consoles = console_files(args.console)
    notifier = build_notifier(cfg, args.notify, roots)
    gate = None
    if notifier is not None:  # one notifier per run on this host: `run` and other watches agree (app/run_lock.py)
        from trainwarden.app.run_lock import NotifyGate, lock_dir
        gate = NotifyGate(lock_dir(cfg))
    agent = Agent(roots, host, port, cfg.policies, poll_interval=poll,
                  rediscover_interval=cfg.rediscover_interval_seconds,
                  use_watchdog=cfg.file_events and not args.no_file_events,
                  host_sources=HostSources(pids={name: pid for name in cfg.runs if (pid := cfg.pid_of(name))}),
                  notifier=notifier, notify_gate=gate)
    agent.fleet.consoles = [(name, path.absolute()) for name, path in consoles]
    agent.fleet.exclude = cfg.exclude
    # when this host first read each run survives a restart: a red of a run watched live never turns into history
    agent.fleet.seen = FirstSeen((cfg.notify.state_dir or default_state_dir()) / "first_seen.json")
    _stop_on_signals(agent)
    agent.start()
    shown_host = f"[{host}]" if ":" in host else host
    log.info("trainwarden %s listening on http://%s:%d/ - watching %s", __version__, shown_host,
             agent.address[1], ", ".join(str(r) for r in roots))
    agent.ready.wait()
    log.info("found %d run(s): %s", len(agent.fleet.readers),
             ", ".join(r.state.name for r in agent.fleet.current_readers()) or "none yet")
    agent.wait()
    return ExitCode.OK


def cmd_notify_test(args: argparse.Namespace) -> ExitCode:
    import socket

    from trainwarden.app.notifier import notify_targets
    from trainwarden.outputs.notify.service import apprise_sender

    cfg = load_config(args.config_file, getattr(args, "profile", None))
    targets = notify_targets(cfg, args.notify)
    if not targets:
        raise UsageError("notify-test: no target (give --notify URL or notify.targets in the config file)")
    send = apprise_sender()
    host = cfg.notify.host or socket.gethostname()
    failed = 0
    for target in targets:
        for severity in sorted(target.severities, key=["critical", "warning", "info"].index)[:1]:
            ok, error = send(target, f"[trainwarden] test notification from {host}",
                             f"This is a test of the target {target.name} ({', '.join(sorted(target.severities))}).",
                             severity)
            print(f"{'ok    ' if ok else 'FAILED'} {target.name}{'' if ok else ': ' + error}")
            failed += not ok
    return ExitCode.FAILURE if failed else ExitCode.OK


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen_address(text)
    except ValueError as exc:
        raise UsageError(f"--web.listen-address: {exc}") from None


def _stop_on_signals(agent) -> None:
    def handler(signum, frame):
        log.info("stopping (signal %d)", signum)
        agent.request_stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread, or a signal this platform lacks
            pass


def cmd_status(args: argparse.Namespace) -> ExitCode:
    from trainwarden.app.local import console_files, local_status
    from trainwarden.app.remote import gather, is_url
    from trainwarden.model import Health

    cfg = load_config(args.config_file, getattr(args, "profile", None))
    targets = list(args.paths) + [str(p) for p in cfg.watch]
    if not targets:
        raise UsageError("status: give at least one PATH or agent URL")
    local = [Path(t) for t in targets if not is_url(t)]
    missing = [str(p) for p in local if not p.exists()]
    if missing:
        raise UsageError(f"status: no such folder: {', '.join(missing)}")
    part = local_status(local, cfg, console_files(args.console)) if local else None
    report, unreachable = gather(part, [t for t in targets if is_url(t)])
    if args.json:
        from trainwarden.outputs.status import to_json

        sys.stdout.write(to_json(report).decode("utf-8") + "\n")
    else:
        from trainwarden.outputs.views.status_table import render_status

        render_status(report)
    for problem in unreachable:
        print(f"trainwarden: cannot read agent: {problem}", file=sys.stderr)
    if unreachable:
        return ExitCode.FAILURE
    if not report.runs:
        raise NothingFound(f"no runs found under {', '.join(targets)}")
    return ExitCode.RED if any(r.health == Health.RED for r in report.runs) else ExitCode.OK


def cmd_tail(args: argparse.Namespace) -> ExitCode:
    from trainwarden.app.remote import fetch_tail, is_url
    if args.lines < 0:
        raise UsageError("tail: -n must be 0 or more")
    if is_url(args.path):
        lines = fetch_tail(args.path, args.run, args.lines)["lines"]
    else:
        from trainwarden.app.local import local_tail
        lines = local_tail(Path(args.path), args.run, args.lines)
    out = sys.stdout
    for line in lines:
        out.write(line + "\n")
    return ExitCode.OK


def cmd_run(args: argparse.Namespace) -> int:
    from trainwarden.app.notifier import build_notifier
    from trainwarden.cli.run import run_supervised
    cfg = load_config(args.config_file, getattr(args, "profile", None))
    host, port = _listen(args.listen_address)
    if args.auto_resume < 0:
        raise UsageError("run: --auto-resume must be 0 or more")
    work = [Path(args.work_dir)] if args.work_dir else [Path.cwd()]
    return run_supervised(args, cfg, build_notifier(cfg, args.notify, work), host, port, UsageError)  # locks: cli/run.py


def cmd_bridge(args: argparse.Namespace) -> ExitCode:
    import os

    from trainwarden.app.bridge import serve_bridge
    cfg = load_config(args.config_file, getattr(args, "profile", None))
    host, port = _listen(args.listen_address)
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"--bridge.token-file: cannot read {args.token_file} ({exc.strerror or exc})") from None
    token = token or os.environ.get("TRAINWARDEN_BRIDGE_TOKEN") or None
    from trainwarden.app.notifier import notify_targets

    targets = notify_targets(cfg, args.notify)
    if not targets:  # keep serving (a stack brought up before its URLs are filled in): say so
        log.warning("bridge: no notification target (--notify URL or notify.targets): alerts are received and dropped")
    if not token:  # an open webhook would let anyone who reaches the port page the user's phone
        raise UsageError("bridge: a token is required: `openssl rand -hex 24 > bridge-token`, then "
                         "--bridge.token-file bridge-token (or TRAINWARDEN_BRIDGE_TOKEN); Alertmanager sends it as "
                         "its bearer token (deploy/alertmanager/alertmanager.yml)")
    if len(token) < 16:
        raise UsageError("bridge: the token is too short (16 characters at least; `openssl rand -hex 24` gives 48)")
    serve_bridge(cfg, targets, token, host, port)
    return ExitCode.OK


def cmd_live(args: argparse.Namespace) -> ExitCode:
    from trainwarden.app.remote import is_url
    from trainwarden.cli.live import run_live
    cfg = load_config(args.config_file, getattr(args, "profile", None))
    if args.interval <= 0:
        raise UsageError("live: --interval must be above 0")
    targets = list(args.paths) + [str(p) for p in cfg.watch]
    if not targets:
        raise UsageError("live: give at least one PATH or agent URL")
    missing = [t for t in targets if not is_url(t) and not Path(t).exists()]
    if missing:
        raise UsageError(f"live: no such folder: {', '.join(missing)}")
    run_live(targets, cfg, args.interval, args.once)
    return ExitCode.OK


def cmd_analyze(args: argparse.Namespace) -> ExitCode:
    from trainwarden.cli.analyze import run_analyze
    cfg = load_config(args.config_file, getattr(args, "profile", None))
    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"analyze: no such folder: {path}")
    try:
        return ExitCode(run_analyze(path, args.run, cfg, args.json, args.html))
    except LookupError as exc:
        raise UsageError(f"analyze: {exc}") from None


def cmd_demo(args: argparse.Namespace) -> ExitCode:
    from trainwarden.cli.demo import run_demo
    _listen(args.listen_address)  # a bad address is a usage error, before anything starts
    return ExitCode(run_demo(args))


# -- parser ----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainwarden",
        description="Watch MMEngine / MMDetection training runs: status, Prometheus metrics, alerts.",
    )
    parser.add_argument("--version", action="version", version=f"trainwarden {__version__}")
    parser.add_argument("--log.level", dest="log_level", default="info",
                        choices=["debug", "info", "warn", "error"], help="log level of the agent's own messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("watch", help="the agent: watch runs, serve /metrics, /api/runs and a status page")
    p.add_argument("paths", nargs="*", metavar="PATH", help="a work dir or a folder of work dirs")
    p.add_argument("--config.file", dest="config_file", type=Path, help="YAML configuration file")
    p.add_argument("--profile", help="judge every run by this policy profile (a shipped name such as guide, or the "
                   "path of a YAML file; replaces the config file's policy.profile)")
    p.add_argument("--web.listen-address", dest="listen_address",
                   help=f"address to serve HTTP on (default {DEFAULT_LISTEN})")
    p.add_argument("--watch.poll-interval", dest="poll_interval", type=float,
                   help="seconds between file checks when no file event arrives (default 0.5)")
    p.add_argument("--watch.no-file-events", dest="no_file_events", action="store_true",
                   help="poll only (network mounts that send no file events)")
    p.add_argument("--notify", action="append", metavar="APPRISE_URL",
                   help="send every severity to this apprise URL (repeatable; the config file routes by severity)")
    p.add_argument("--console", action="append", metavar="[RUN=]FILE",
                   help="a console capture of a run (nohup, tee, slurm) to read for errors (repeatable)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("notify-test", help="send a test message to every configured target and say which failed")
    p.add_argument("--notify", action="append", metavar="APPRISE_URL", help="a target to test (repeatable)")
    p.add_argument("--config.file", dest="config_file", type=Path, help="YAML configuration file")
    p.set_defaults(func=cmd_notify_test)

    p = sub.add_parser("status", help="one-shot state of every run (exit 3 when any run is red)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="a work dir, a folder of work dirs, or an agent URL")
    p.add_argument("--json", action="store_true", help="print the status document as JSON")
    p.add_argument("--console", action="append", metavar="[RUN=]FILE", help="a console capture of a run (repeatable)")
    p.add_argument("--config.file", dest="config_file", type=Path, help="YAML configuration file")
    p.add_argument("--profile", help="judge every run by this policy profile (a shipped name such as guide, or the "
                   "path of a YAML file; replaces the config file's policy.profile)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("tail", help="last lines of the newest log of a run")
    p.add_argument("path", metavar="PATH", help="a work dir, a log file, or an agent URL")
    p.add_argument("-n", "--lines", type=int, default=20, help="number of lines (default 20)")
    p.add_argument("--run", help="the run, when PATH holds several")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("bridge", help="receive Alertmanager webhooks and deliver them through apprise")
    p.add_argument("--web.listen-address", dest="listen_address", default="127.0.0.1:9842",
                   help="address to receive webhooks on (default 127.0.0.1:9842)")
    p.add_argument("--bridge.token-file", dest="token_file",
                   help="file holding the shared secret Alertmanager sends as a bearer token "
                        "(or the TRAINWARDEN_BRIDGE_TOKEN environment variable)")
    p.add_argument("--notify", action="append", metavar="APPRISE_URL", help="a target for every severity")
    p.add_argument("--config.file", dest="config_file", type=Path, help="YAML configuration file (notify: targets)")
    p.set_defaults(func=cmd_bridge)

    p = sub.add_parser("run", help="start and supervise a training command (console capture, exit code, alerts)")
    p.add_argument("--work-dir", dest="work_dir", help="the run's work dir (default: from the command)")
    p.add_argument("--auto-resume", dest="auto_resume", type=int, default=0, metavar="N",
                   help="after a crash, resume from the newest checkpoint at most N times (halving the batch size "
                        "after an out-of-memory)")
    p.add_argument("--notify", action="append", metavar="APPRISE_URL", help="send every severity to this apprise URL")
    p.add_argument("--config.file", dest="config_file", type=Path, help="YAML configuration file")
    p.add_argument("--profile", help="judge every run by this policy profile (a shipped name such as guide, or the "
                   "path of a YAML file; replaces the config file's policy.profile)")
    p.add_argument("--web.listen-address", dest="listen_address", default="127.0.0.1:0",
                   help="address of the embedded agent (default: a free loopback port)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND...: the training command")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("live", help="a terminal view that refreshes in place (q or Ctrl-C quits)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="work dirs, folders of work dirs, or agent URLs")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between refreshes (default 30)")
    p.add_argument("--once", action="store_true", help="draw once and exit (for scripts)")
    p.add_argument("--config.file", dest="config_file", type=Path, help="YAML configuration file")
    p.add_argument("--profile", help="judge every run by this policy profile (a shipped name such as guide, or the "
                   "path of a YAML file; replaces the config file's policy.profile)")
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("analyze", help="detailed analysis of one run: trends, verdict, Plan B, next steps")
    p.add_argument("path", metavar="PATH", help="a work dir (or a folder holding one run; --run picks among many)")
    p.add_argument("--run", help="the run, when PATH holds several")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the analysis as JSON")
    out.add_argument("--html", metavar="FILE", type=Path, help="write one self-contained HTML file with plots")
    p.add_argument("--config.file", dest="config_file", type=Path, help="YAML configuration file")
    p.add_argument("--profile", help="judge every run by this policy profile (a shipped name such as guide, or the "
                   "path of a YAML file; replaces the config file's policy.profile)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("demo", help="replay a realistic run at high speed and watch it")
    p.add_argument("--dir", type=Path, help="where to write the run (default: a new temporary folder)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds the replay takes (default 60)")
    p.add_argument("--epochs", type=int, default=5, help="epochs to replay (default 5)")
    p.add_argument("--web.listen-address", dest="listen_address", default=DEFAULT_LISTEN,
                   help=f"address of the demo agent (default {DEFAULT_LISTEN}; another port if taken)")
    p.add_argument("--notify", action="append", metavar="APPRISE_URL",
                   help="also send the demo run's notifications to this apprise URL")
    p.add_argument("--linger", type=float, default=-1,
                   help="seconds to keep serving after the replay (default: until Ctrl-C; 0: exit at once)")
    p.set_defaults(func=cmd_demo)
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level={"warn": logging.WARNING}.get(level, getattr(logging, level.upper(), logging.INFO)),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on bad usage, as argparse does
    setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"trainwarden: config error: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    except UsageError as exc:
        print(f"trainwarden: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except NothingFound as exc:
        print(f"trainwarden: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    except KeyboardInterrupt:
        return ExitCode.OK
    except Exception as exc:  # the error boundary: one clear line, the details only at debug level
        from trainwarden.app.remote import RemoteError
        if isinstance(exc, RemoteError):
            print(f"trainwarden: cannot read agent: {exc}", file=sys.stderr)
        elif isinstance(exc, OSError):
            print(f"trainwarden: {exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}",
                  file=sys.stderr)
        else:
            print(f"trainwarden: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        log.debug("details", exc_info=True)
        return ExitCode.FAILURE
