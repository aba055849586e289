"""An accelerated soak: several training runs, hours of training each compressed into minutes, watched by a real
`trainwarden watch` (a child process) that notifies a local HTTP sink through apprise, while faults are thrown in:
a log rotated, a log truncated (copytruncate), the agent killed with `kill -9` and restarted, the target down for a
stretch. Used by tests/test_soak.py (short) and bench/soak.py (long, prints the counts).

Each run logs an MMEngine epoch of 1000 iterations every 50 (20 lines), a validation and a checkpoint: at 10 lines a
second an epoch of ~7.6 minutes of training (0.46 s an iteration) takes 2 s, 228 times faster than real. Loss
explosions (loss 1.5 for 1.5 s) come on a schedule that keeps clear of the agent's death: each must be notified
exactly once, firing and resolved.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from conftest import free_port
from sinks import HttpSink

P = " - mmengine - INFO - "
IPE = 1000


def _now() -> str:
    return time.strftime("%Y/%m/%d %H:%M:%S")


def train_line(epoch: int, it: int, loss: float, max_epochs: int) -> str:
    return (f"{_now()}{P}Epoch(train)  [{epoch}][{it:>4}/{IPE}]  base_lr: 4.0000e-05 lr: 4.0000e-05  eta: 1:00:00  "
            f"time: 0.4567  data_time: 0.0123  memory: 5432  grad_norm: 6.5000  loss: {loss:.4f}  loss_cls: 0.1200  "
            f"acc: 96.0000  loss_bbox: 0.1700\n")


@dataclass
class Trainer:
    """One run: writes its log at `rate` lines a second, an explosion when told, counts what it wrote."""

    log: Path
    max_epochs: int
    rate: float
    explosions: list[float]  # seconds after the start
    epoch: int = 1
    it: int = 0
    lines: int = 0
    exploded: int = 0
    explosion_starts: list = field(default_factory=list)  # seconds after the soak's start
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start_file(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.append(f"{_now()}{P}Config:\ntrain_cfg = dict(type='EpochBasedTrainLoop', max_epochs={self.max_epochs}, "
                    "val_interval=1)\ntrain_dataloader = dict(batch_size=4)\nval_evaluator = dict(type='VOCMetric')\n")

    def append(self, text: str) -> None:
        with self.lock, self.log.open("a", encoding="utf-8") as f:
            f.write(text)
        self.lines += text.count("\n")

    def step(self, elapsed: float) -> None:
        exploding = any(t <= elapsed < t + 1.5 for t in self.explosions)
        if exploding and not any(t <= elapsed - 1 / self.rate < t + 1.5 for t in self.explosions):
            self.exploded += 1
            self.explosion_starts.append(round(elapsed, 1))
        self.it += 50
        self.append(train_line(self.epoch, self.it, 1.5 if exploding else 0.30 - 0.002 * self.epoch, self.max_epochs))
        if self.it >= IPE:
            m_ap = 0.60 + 0.002 * self.epoch
            self.append(f"{_now()}{P}Saving checkpoint at {self.epoch} epochs\n"
                        f"{_now()}{P}Epoch(val) [{self.epoch}][2252/2252]    pascal_voc/mAP: {m_ap:.4f}  "
                        f"pascal_voc/AP50: 0.8000  data_time: 0.0020  time: 0.0921\n")
            (self.log.parent.parent / f"epoch_{self.epoch}.pth").write_bytes(b"x")
            self.epoch, self.it = self.epoch + 1, 0
            if self.epoch > self.max_epochs:
                self.done = True

    def rotate(self) -> None:
        with self.lock:
            self.log.rename(self.log.with_name(self.log.name + ".1"))

    def copytruncate(self) -> None:
        with self.lock:
            self.log.with_name(self.log.name + ".2").write_bytes(self.log.read_bytes())
            with self.log.open("r+b") as f:
                f.truncate(0)

    @property
    def iteration(self) -> int:
        """What the agent must show: iterations since the start of training."""
        epoch, it = (self.epoch, self.it) if self.it else (self.epoch - 1, IPE)
        return (epoch - 1) * IPE + it


class Agent:
    def __init__(self, root: Path, config: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "trainwarden", "watch", str(root), "--config.file", str(config),
                    "--web.listen-address", f"127.0.0.1:{self.port}"]
        self.proc: subprocess.Popen | None = None
        self.stderr = root.parent / "agent.stderr"
        self.peak_rss = 0

    def start(self) -> None:
        with self.stderr.open("a") as err:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.get("/healthz") is not None:
                return
            time.sleep(0.1)
        raise RuntimeError("the agent did not come up")

    def get(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None

    def sample_rss(self) -> None:
        try:
            self.peak_rss = max(self.peak_rss, psutil.Process(self.proc.pid).memory_info().rss)
        except (psutil.Error, AttributeError):
            pass

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def run_soak(workdir: Path, seconds: float = 60, runs: int = 4, rate: float = 10.0, faults: bool = True) -> dict:
    """Run the soak; return the counts (and `problems`, a list of what went wrong: empty when all held). Without
    `faults`, the same load with nothing thrown in (to see the agent's memory settle over a long stretch)."""
    root = workdir / "work_dirs"
    sink = HttpSink()
    config = workdir / "trainwarden.yml"
    config.write_text("policy:\n  profile: guide\n"  # the explosions these drills throw are the guide's loss_max
                      f"notify:\n  host: soak\n  state_dir: {workdir / 'state'}\n  resolve_after_seconds: 0\n"
                      f"  targets:\n    - url: {sink.url()}\n", encoding="utf-8")
    never = 10 * seconds
    kill_at, dead_for = (0.40 * seconds, 2.0) if faults else (never, 0.0)
    down_from, down_to = (0.60 * seconds, 0.75 * seconds) if faults else (never, never)
    rotate_at, truncate_at = (0.25 * seconds, 0.52 * seconds) if faults else (never, never)
    epochs = int(seconds * rate / 20) + 5  # never done before the end: a run that ends mid-explosion stays red
    trainers = []
    for k in range(runs):
        # explosions every 12 s, staggered by run; none near the agent's death or a file fault
        times = [t for t in (4 + 12 * j + 1.3 * k for j in range(int(seconds / 12) + 1))
                 if t + 4 < seconds and not (kill_at - 4 < t < kill_at + dead_for + 8)
                 and not any(f - 3 < t < f + 3 for f in (rotate_at, truncate_at))]
        trainer = Trainer(root / f"run{k:02d}" / "20251111_180600" / "20251111_180600.log", epochs, rate, times)
        trainer.start_file()
        trainers.append(trainer)
    agent = Agent(root, config)
    agent.start()
    done_faults: list[str] = []
    rss_series: list[float] = []  # the peak so far, every 10 s
    start = time.monotonic()
    next_line = start
    try:
        while (elapsed := time.monotonic() - start) < seconds:
            for t in trainers:
                if not t.done:
                    t.step(elapsed)
            if rotate_at <= elapsed and "rotated" not in done_faults:
                trainers[0].rotate()
                done_faults.append("rotated")
            if truncate_at <= elapsed and "truncated" not in done_faults:
                trainers[1 % runs].copytruncate()
                done_faults.append("truncated")
            if kill_at <= elapsed and "killed" not in done_faults:
                agent.sample_rss()
                agent.kill9()
                done_faults.append("killed")
            if "killed" in done_faults and "restarted" not in done_faults and elapsed >= kill_at + dead_for:
                agent.start()
                done_faults.append("restarted")
            sink.down = down_from <= elapsed < down_to
            if sink.down and "target down" not in done_faults:
                done_faults.append("target down")
            if int(elapsed) != int(elapsed - 1 / rate):
                agent.sample_rss()
                if int(elapsed) % 10 == 0:
                    rss_series.append(round(agent.peak_rss / 2**20, 1))
            next_line += 1 / rate
            time.sleep(max(0.0, next_line - time.monotonic()))
        sink.down = False
        # every explosion's firing and resolved notice delivered, the state caught up
        expected = {f"[{kind}] TrainingLossExplosion - run{k:02d} on soak": t.exploded
                    for k, t in enumerate(trainers) for kind in ("RED", "RESOLVED")}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seen = sink.delivered_titles()
            if all(seen[title] >= n for title, n in expected.items()):
                break
            time.sleep(0.5)
        time.sleep(3.0)  # anything sent twice arrives now
        seen = sink.delivered_titles()
        timeline = sink.timeline()
        doc = json.loads(agent.get("/api/runs") or "{}")
        metrics = agent.get("/metrics") or ""
        agent.sample_rss()
    finally:
        agent.stop()
        sink.close()
    by_run = {r["run"]: r for r in doc.get("runs", [])}
    problems = []
    for k, t in enumerate(trainers):
        run = by_run.get(f"run{k:02d}", {})
        if run.get("iteration") != t.iteration:
            problems.append(f"run{k:02d}: iteration {run.get('iteration')} shown, {t.iteration} written")
        if len(run.get("checkpoints") or []) != len(list(t.log.parent.parent.glob("epoch_*.pth"))):
            problems.append(f"run{k:02d}: {len(run.get('checkpoints') or [])} checkpoints shown")
    lost = {title: n - seen[title] for title, n in expected.items() if seen[title] < n}
    twice = {title: seen[title] - n for title, n in expected.items() if seen[title] > n}
    problems += [f"missing: {t} x{n}" for t, n in lost.items()] + [f"sent twice: {t} x{n}" for t, n in twice.items()]
    for title in (*lost, *twice):  # what happened to that run, for whoever reads the failure
        k = int(title.split(" - run")[1][:2])
        notices = [(round(at - start, 1), t.split(" ")[0]) for at, t in timeline
                   if f" - run{k:02d} " in t and "Explosion" in t]
        problems.append(f"run{k:02d}: explosions at {trainers[k].explosion_starts} s; notices at {notices}")
    tracebacks = agent.stderr.read_text(encoding="utf-8", errors="replace").count("Traceback")
    if tracebacks:
        problems.append(f"{tracebacks} tracebacks in the agent's log")
    return {
        "seconds": seconds, "runs": runs, "faults": done_faults,
        "simulated_training_hours_per_run": round(sum(t.iteration for t in trainers) / runs * 0.4567 / 3600, 1),
        "lines_written": sum(t.lines for t in trainers),
        "explosions": sum(t.exploded for t in trainers),
        "notifications_expected": sum(expected.values()),
        "notifications_delivered": sum(min(seen[t], n) for t, n in expected.items()),
        "missing": sum(lost.values()), "twice": sum(twice.values()),
        "messages_received": len(sink.received), "titles_received": sum(seen.values()),
        "sink_attempts": sink.attempts,
        "agent_peak_rss_mib": round(agent.peak_rss / 2**20, 1), "agent_peak_rss_every_10s_mib": rss_series,
        "metrics_bytes": len(metrics), "problems": problems,
    }
