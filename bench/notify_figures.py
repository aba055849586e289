"""Prints the notification figures of issue 4, with a real agent (`trainwarden watch` in a child process) and a
local HTTP sink as the apprise json:// target:

1. latency: a logged loss above 1.0 appended to a watched run, until the sink has the TrainingLossExplosion message;
2. outage: the target down for `--down-seconds` (600 by default) while 50 conditions fire and resolve, with a
   `kill -9` of the agent in the middle: after the target returns, every notification must arrive, none twice.

    .venv/bin/python bench/notify_figures.py                  # about 11 minutes
    .venv/bin/python bench/notify_figures.py --down-seconds 60
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from conftest import free_port  # noqa: E402
from sinks import HttpSink  # noqa: E402

P = " - mmengine - INFO - "



def line(epoch: int, it: int, loss: float) -> str:
    return (f"{time.strftime('%Y/%m/%d %H:%M:%S')}{P}Epoch(train)  [{epoch}][{it:>4}/1000]  lr: 4.0000e-05  "
            f"eta: 0:10:00  time: 0.4567  data_time: 0.0123  memory: 5432  loss: {loss:.4f}  loss_cls: 0.1200\n")


def make_runs(root: Path, n: int) -> list[Path]:
    logs = []
    for k in range(n):
        session = root / f"run{k:02d}" / "20251111_180600"
        session.mkdir(parents=True)
        log = session / "20251111_180600.log"
        log.write_text(line(1, 50, 0.30), encoding="utf-8")
        logs.append(log)
    return logs


def append(log: Path, text: str) -> None:
    with log.open("a", encoding="utf-8") as f:
        f.write(text)


class AgentProcess:
    def __init__(self, root: Path, sink: HttpSink, state: Path) -> None:
        self.port = free_port()
        cfg = root.parent / "bench.yml"
        cfg.write_text(f"notify:\n  state_dir: {state}\n  resolve_after_seconds: 5\n  host: bench\n"
                       f"  targets:\n    - url: {sink.url()}\n", encoding="utf-8")
        self.cmd = [sys.executable, "-m", "trainwarden", "watch", str(root), "--config.file", str(cfg),
                    "--web.listen-address", f"127.0.0.1:{self.port}"]
        self.proc: subprocess.Popen | None = None

    def start(self, runs: int) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/runs", timeout=2) as r:
                    if len(json.loads(r.read())["runs"]) >= runs:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("the agent did not come up")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def latency(trials: int) -> None:
    sink = HttpSink()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "work_dirs"
        logs = make_runs(root, trials)
        agent = AgentProcess(root, sink, Path(tmp) / "state")
        agent.start(trials)
        try:
            time.sleep(1.0)
            took = []
            for k, log in enumerate(logs):
                append(log, line(1, 100, 1.35))
                start = time.perf_counter()
                want = f"TrainingLossExplosion - run{k:02d} on bench"
                while not any(want in t for t in sink.titles()):
                    if time.perf_counter() - start > 30:
                        break
                    time.sleep(0.005)
                took.append(time.perf_counter() - start)
                time.sleep(0.3)
        finally:
            agent.stop()
            sink.close()
    print(f"latency: a logged loss above 1.0 reached the json:// target after {statistics.median(took) * 1000:.0f} ms "
          f"median, {max(took) * 1000:.0f} ms worst of {len(took)} (requirement: under 2 s)")


def outage(n: int, down_seconds: float) -> int:
    sink = HttpSink()
    sink.down = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "work_dirs"
        logs = make_runs(root, n)
        agent = AgentProcess(root, sink, Path(tmp) / "state")
        agent.start(n)
        down_since = time.monotonic()
        try:
            for k, log in enumerate(logs):
                append(log, line(1, 100, 1.35))  # TrainingLossExplosion fires
                time.sleep(0.05)
                if k == n // 2:
                    time.sleep(2.0)
                    agent.kill9()  # in the middle of it all
                    agent.start(n)
            time.sleep(3.0)
            for log in logs:
                append(log, line(1, 150, 0.30))  # ...and resolves
            time.sleep(10.0)  # the 5 s hold-down, then the resolved notices are queued
            agent.kill9()  # once more, with everything queued
            agent.start(n)
            remaining = down_seconds - (time.monotonic() - down_since)
            if remaining > 0:
                time.sleep(remaining)
            attempts_while_down = sink.attempts
            sink.down = False
            back = time.monotonic()
            expected = [f"[RED] TrainingLossExplosion - run{k:02d} on bench" for k in range(n)]
            expected += [f"[RESOLVED] TrainingLossExplosion - run{k:02d} on bench" for k in range(n)]
            while time.monotonic() - back < 600:
                seen = sink.delivered_titles()
                if all(seen[t] >= 1 for t in expected):
                    break
                time.sleep(0.5)
            drained = time.monotonic() - back
            time.sleep(5.0)  # anything sent twice would arrive now
            seen = sink.delivered_titles()
        finally:
            agent.stop()
            sink.close()
    missing = [t for t in expected if seen[t] == 0]
    twice = [t for t in expected if seen[t] > 1]
    print(f"outage: target down {down_seconds:.0f} s with {n} conditions firing and resolving and two kill -9 of the "
          f"agent; {attempts_while_down} delivery attempts refused while down; after it returned, "
          f"{sum(1 for t in expected if seen[t] >= 1)}/{len(expected)} notifications arrived in {drained:.1f} s "
          f"({len(sink.received)} messages), {len(missing)} missing, {len(twice)} twice")
    return 0 if not missing and not twice else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--down-seconds", type=float, default=600)
    parser.add_argument("--conditions", type=int, default=50)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    latency(args.trials)
    return outage(args.conditions, args.down_seconds)


if __name__ == "__main__":
    sys.exit(main())
