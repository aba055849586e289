"""The `run` command: supervise a training command with an embedded agent that watches its work dir."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from trainwarden.app.agent import Agent
from trainwarden.app.supervise import Attempt, Supervisor, install_forwarding, with_resume, work_dir_of

log = logging.getLogger("trainwarden.run")
READY_TIMEOUT_SECONDS = 60.0  # the first read of the work dir (a resumed run's history) before the child starts
READ_TIMEOUT_SECONDS = 30.0  # the agent reading and judging what the child wrote, once it exited


def _current_batch(agent: Agent, run: str) -> int | None:
    for r in agent.status_document()["runs"]:
        if r["run"] == run:
            return r.get("batch_size")
    return None


def _framework(agent: Agent, run: str) -> str:
    for reader in agent.fleet.current_readers():
        if reader.state.name == run:
            return reader.state.framework
    return "mmengine"


def run_supervised(args: argparse.Namespace, cfg, notifier, host: str, port: int, usage_error) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise usage_error("run: give the training command after --, e.g. trainwarden run -- python tools/train.py CONFIG")
    work_dir = Path(args.work_dir) if args.work_dir else work_dir_of(command)
    if work_dir is None:
        raise usage_error("run: cannot tell the work dir from the command: give --work-dir DIR")
    work_dir = work_dir.absolute()
    work_dir.mkdir(parents=True, exist_ok=True)
    run = work_dir.name
    from trainwarden.ingest.host.sources import HostSources

    host_sources = HostSources()
    gate = None
    if notifier is not None:  # `run` notifies for its run even beside a watch of it, which lets it (app/run_lock.py)
        from trainwarden.app.run_lock import NotifyGate, lock_dir
        gate = NotifyGate(lock_dir(cfg), supervised=work_dir)
    agent = Agent([work_dir], host, port, cfg.policies, poll_interval=0.5, rediscover_interval=1.0,
                  host_sources=host_sources, notifier=notifier, evaluate_interval=1.0, notify_gate=gate)
    agent.start()
    log.info("watching %s (status on http://%s:%d/)", work_dir, *agent.address)
    if not agent.ready.wait(timeout=READY_TIMEOUT_SECONDS):  # what the work dir already holds, read before training adds
        log.warning("the agent is still reading %s: starting the training anyway", work_dir)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    attempts_left = max(0, args.auto_resume)
    attempt = Attempt(command)
    code = 1
    try:
        n = 0
        while True:
            n += 1
            console = work_dir / f"trainwarden-console-{stamp}-{n}.log"
            supervisor = Supervisor(attempt.command, console)
            install_forwarding(supervisor)
            child = supervisor.start(attempt)
            host_sources.tracker.adopt(run, child.pid)
            code = supervisor.wait(attempt)
            host_sources.tracker.report_exit(run, code)
            log.info("training exited with code %s%s", code,
                     f" ({', '.join(f'{k}: {v}' for k, v in attempt.errors.items())})" if attempt.errors else "")
            if not agent.refresh(timeout=READ_TIMEOUT_SECONDS):  # the last lines read and the exit judged
                log.warning("the agent did not read the run's last lines within %.0f s", READ_TIMEOUT_SECONDS)
            if code != 0 and notifier is not None and not any(r.state.name == run for r in agent.fleet.current_readers()):
                # it died before writing any log: no run for the evaluator to judge, so say it here
                notifier.notice(f"{run}|{stamp}|{n}|early-exit", "critical",
                                f"[RED] TrainingProcessExited - {run} on {notifier.host}",
                                f"The training command exited with code {code} before writing a log.\n"
                                f"Command: {' '.join(attempt.command)}\nConsole: {console}\n\n"
                                + "\n".join(attempt.evidence[-20:]))
            if code == 0 or supervisor.forwarded_signal is not None or attempts_left == 0:
                break
            attempts_left -= 1
            oom = attempt.errors.get("cuda_oom", 0) > 0
            batch = _current_batch(agent, run)
            half = max(1, batch // 2) if oom and batch and batch > 1 else None
            next_command = with_resume(command, _framework(agent, run), half)
            reason = "out of GPU memory" if oom else f"exit code {code}"
            text = (f"{run}: {reason}; restarting ({args.auto_resume - attempts_left}/{args.auto_resume})"
                    + (f" with batch size {half}" if half else "") + f":\n{' '.join(next_command)}\n\n"
                    + "\n".join(attempt.evidence[-10:]))
            log.warning("%s", text.splitlines()[0])
            if notifier is not None:
                notifier.notice(f"{run}|{stamp}|{n}", "warning", f"[YELLOW] auto-resume - {run}", text)
            command = next_command
            attempt = Attempt(next_command)
    finally:
        if notifier is not None:
            agent.refresh(timeout=READ_TIMEOUT_SECONDS)  # judged once more, whatever ended the loop
            if not notifier.flush(timeout=30):
                log.warning("%d notification(s) still queued: they go out at the next start", notifier.queue_length())
        agent.stop()
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention
