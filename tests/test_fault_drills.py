"""Fault drills (issue 7): each fault is thrown at a real agent while a run is being written, and each drill checks
the same three things: nothing lost (every line read, every condition notified), nothing sent twice, and the agent
still serving. Notifications go through apprise to a local HTTP sink; the disk-full drill uses a real tmpfs; the
kill -9 drill kills a real `trainwarden watch` process; the Prometheus drill restarts the Debian binary."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import fake_pynvml
import pytest
from conftest import Clock, free_port, wait_for
from sinks import HttpSink
from stack import first_lines, line, running_stack
from test_agent import get, value

from trainwarden.app.agent import Agent
from trainwarden.app.profiles import guide_policy
from trainwarden.ingest.host.nvml import Nvml
from trainwarden.ingest.host.sources import HostSources
from trainwarden.model import Condition, RunReport, RunState, Severity, StatusReport
from trainwarden.outputs.notify.service import Notifier
from trainwarden.outputs.notify.targets import Target

RED_LOSS = "[RED] TrainingLossExplosion - exp"
RESOLVED_LOSS = "[RESOLVED] TrainingLossExplosion - exp"


class Writer:
    """A training run's log: appends MMEngine train lines with rising iterations and counts what it wrote."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.it = 100
        self.written = 0

    def fresh(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        text = first_lines()
        self.log.write_text(text, encoding="utf-8")
        self.written += text.count("\n")

    def write(self, n: int, loss: float = 0.30) -> None:
        with self.log.open("a", encoding="utf-8") as f:
            for _ in range(n):
                self.it += 1
                f.write(line(self.it, loss))
                self.written += 1


def start_agent(root: Path, notifier: Notifier | None = None, host: HostSources | None = None) -> tuple[Agent, str]:
    host = host or HostSources(nvml=Nvml(loader=lambda: fake_pynvml.make([])))
    agent = Agent([root], "127.0.0.1", 0, guide_policy(), poll_interval=0.1, rediscover_interval=0.3, notifier=notifier,
                  host_sources=host, evaluate_interval=0.2)
    agent.start()
    assert agent.ready.wait(30)
    return agent, f"http://127.0.0.1:{agent.address[1]}"


def metric(base: str, name: str, **labels) -> float | None:
    status, _, text = get(base + "/metrics")
    assert status == 200, "the agent stopped serving /metrics"
    return value(text, name, **labels)


def serving(base: str) -> bool:
    return get(base + "/healthz")[0] == 200 and get(base + "/api/runs")[0] == 200


def count(sink: HttpSink, text: str) -> int:
    return sum(text in m.get("title", "") + "\n" + m.get("message", "") for m in sink.received)


def watched_run(tmp_path: Path, sink: HttpSink, state_dir: Path) -> tuple[Writer, Agent, str]:
    """A run `exp` being written, watched by an agent that notifies `sink` (resolved notices at once)."""
    w = Writer(tmp_path / "work_dirs" / "exp" / "20251111_180600" / "20251111_180600.log")
    w.fresh()
    notifier = Notifier([Target(sink.url())], state_dir, host="box", resolve_after_seconds=0)
    agent, base = start_agent(tmp_path / "work_dirs", notifier)
    return w, agent, base


def test_log_truncated_rotated_deleted_and_recreated(tmp_path, sink):
    w, agent, base = watched_run(tmp_path, sink, tmp_path / "state")
    log = w.log
    try:
        def caught_up() -> bool:
            return (metric(base, "trainwarden_log_lines_total", run="exp") == w.written
                    and metric(base, "trainwarden_train_iteration", run="exp") == 1000 + w.it)

        w.write(20)
        wait_for(caught_up)
        # rotated: renamed away while lines are still being written to it, a new file in its place
        w.write(5)
        log.rename(log.with_name(log.name + ".1"))
        w.write(1, loss=1.5)  # the loss explodes in the new file
        wait_for(caught_up)
        wait_for(lambda: count(sink, RED_LOSS) == 1, timeout=15)
        w.write(10)
        wait_for(caught_up)
        wait_for(lambda: count(sink, RESOLVED_LOSS) == 1, timeout=15)
        # truncated in place (copytruncate, after the agent read it), then written again from a smaller size
        shutil.copy(log, log.with_name(log.name + ".2"))
        log.write_bytes(b"")
        w.write(7)
        wait_for(caught_up)
        # deleted, then re-created by the trainer
        log.unlink()
        time.sleep(0.5)
        assert serving(base)
        w.write(12)
        wait_for(caught_up)
        assert serving(base)
        assert metric(base, "trainwarden_log_parse_errors_total", run="exp") == 0
        time.sleep(1.0)  # evaluations keep running: still one message each
        assert count(sink, RED_LOSS) == 1 and count(sink, RESOLVED_LOSS) == 1
    finally:
        agent.stop()


def test_a_removed_work_dir_leaves_the_agent_serving_and_comes_back(tmp_path):
    root = tmp_path / "work_dirs"
    keep = Writer(root / "keep" / "20251111_180600" / "20251111_180600.log")
    gone = Writer(root / "exp" / "20251111_180600" / "20251111_180600.log")
    keep.fresh()
    gone.fresh()
    agent, base = start_agent(root)
    try:
        wait_for(lambda: metric(base, "trainwarden_log_lines_total", run="exp") == gone.written)
        shutil.rmtree(root / "exp")
        wait_for(lambda: metric(base, "trainwarden_log_lines_total", run="exp") is None, timeout=15)
        keep.write(3)
        wait_for(lambda: metric(base, "trainwarden_log_lines_total", run="keep") == keep.written)
        assert metric(base, "trainwarden_collector_success", collector="logs") == 1
        # the same work dir written again: found again and read from its start
        again = Writer(root / "exp" / "20251112_090000" / "20251112_090000.log")
        again.fresh()
        again.write(4)
        wait_for(lambda: metric(base, "trainwarden_log_lines_total", run="exp") == again.written, timeout=15)
        assert serving(base)
    finally:
        agent.stop()


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs: a real file system that really fills up (needs root with mount rights, as CI runs)."""
    mount = shutil.which("mount")
    disk = tmp_path / "disk"
    disk.mkdir()
    result = subprocess.run([mount or "mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full drill (run the tests as root): {result.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("ab", buffering=0) as f:  # unbuffered: nothing left to flush (and fail) at close
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_a_full_disk_under_the_outbox_loses_nothing(tmp_path, small_disk, sink):
    w, agent, base = watched_run(tmp_path, sink, small_disk / "state")
    try:
        time.sleep(1.0)  # what the run's first lines raise (a validation below target) goes out first
        wait_for(lambda: metric(base, "trainwarden_notification_queue_length") == 0, timeout=15)
        sink.down = True
        filler = fill(small_disk)
        w.write(1, loss=1.5)  # fires while the disk is full and the target down
        wait_for(lambda: metric(base, "trainwarden_notification_store_write_errors_total") >= 1, timeout=15)
        assert metric(base, "trainwarden_notification_queue_length") == 1  # held in memory
        w.write(1)  # resolves, still on a full disk
        wait_for(lambda: metric(base, "trainwarden_notification_queue_length") == 2, timeout=15)
        assert serving(base)
        filler.unlink()  # space again: the held messages reach the disk
        wait_for(lambda: len(list((small_disk / "state" / "outbox").glob("*.json"))) == 2, timeout=15)
        sink.down = False
        wait_for(lambda: metric(base, "trainwarden_notification_queue_length") == 0, timeout=90, interval=0.5)
        assert count(sink, RED_LOSS) == 1 and count(sink, RESOLVED_LOSS) == 1
        # and while the target is up, a full disk delays nothing
        fill(small_disk)
        w.write(1, loss=2.5)
        wait_for(lambda: count(sink, RED_LOSS) == 2, timeout=15)
        assert serving(base)
    finally:
        agent.stop()


def watch_process(root: Path, port: int, config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trainwarden", "watch", str(root), "--config.file", str(config),
                             "--web.listen-address", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_the_agent_killed_and_restarted_mid_run(tmp_path, sink):
    log = tmp_path / "work_dirs" / "exp" / "20251111_180600" / "20251111_180600.log"
    w = Writer(log)
    w.fresh()
    config = tmp_path / "trainwarden.yml"
    config.write_text("policy:\n  profile: guide\n"  # the explosions these drills throw are the guide's loss_max
                      f"notify:\n  host: box\n  state_dir: {tmp_path / 'state'}\n  resolve_after_seconds: 0\n"
                      f"  targets:\n    - url: {sink.url()}\n", encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    agent = watch_process(tmp_path / "work_dirs", port, config)
    try:
        wait_for(lambda: _up(base), timeout=30)
        w.write(5, loss=1.5)
        wait_for(lambda: count(sink, RED_LOSS) == 1, timeout=20)
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        # while it is dead: the loss comes back (resolved) and the training keeps writing
        w.write(30)
        agent = watch_process(tmp_path / "work_dirs", port, config)
        wait_for(lambda: _up(base), timeout=30)
        wait_for(lambda: metric(base, "trainwarden_train_iteration", run="exp") == 1000 + w.it, timeout=20)
        wait_for(lambda: count(sink, RESOLVED_LOSS) == 1, timeout=20)
        # killed again right after a new explosion was read, before (or while) delivering it
        w.write(1, loss=3.0)
        wait_for(lambda: metric(base, "trainwarden_train_loss", run="exp") == 3.0, timeout=20)
        time.sleep(0.3)
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        agent = watch_process(tmp_path / "work_dirs", port, config)
        wait_for(lambda: _up(base), timeout=30)
        wait_for(lambda: count(sink, RED_LOSS) == 2, timeout=20)
        time.sleep(2.0)  # several evaluations after the restart
        assert count(sink, RED_LOSS) == 2 and count(sink, RESOLVED_LOSS) == 1
        assert metric(base, "trainwarden_notification_queue_length") == 0
    finally:
        agent.terminate()
        _, err = agent.communicate(timeout=20)
        assert "Traceback" not in err, err


def _up(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_a_target_down_for_an_hour(tmp_path, sink):
    """An hour on the notifier's clock (injected): conditions come and go every few minutes while the target
    answers 503; retries back off to one a minute; when it is back, everything arrives once."""
    clock = Clock()
    n = Notifier([Target(sink.url())], tmp_path / "state", host="box", resolve_after_seconds=0, clock=clock)
    sink.down = True
    runs = [f"run{i}" for i in range(12)]

    def doc(active: list[str]) -> StatusReport:
        loss = [Condition("TrainingLossExplosion", Severity.CRITICAL, f"{r}: loss", "d", "x", None, r) for r in runs]
        return StatusReport(runs=tuple(RunReport(run=r, work_dir=f"/w/{r}", state=RunState.RUNNING,
                                                 conditions=(c,) if r in active else ())
                                       for r, c in zip(runs, loss, strict=True)))

    for minute in range(60):
        active = [r for i, r in enumerate(runs) if i * 5 <= minute < i * 5 + 3]  # each run: 3 minutes of trouble
        for _ in range(6):
            n.handle(doc(active), lambda run, k: [])
            n.deliver_once()
            clock.t += 10
    assert sink.received == []
    assert n.queue_length() == 24  # 12 firing + 12 resolved, nothing dropped
    assert sink.attempts <= 90, sink.attempts  # backed off: about one try a minute, not one per evaluation
    sink.down = False
    for _ in range(12):
        n.deliver_once()
        clock.t += 10
    text = "\n".join(m["message"] for m in sink.received)  # a combined message lists each in its body
    for r in runs:
        assert text.count(f"[RED] TrainingLossExplosion - {r} on box") == 1
        assert text.count(f"[RESOLVED] TrainingLossExplosion - {r} on box") == 1
    assert n.queue_length() == 0
    assert n.sent["critical"] == 24


def test_nvml_failing_mid_run(tmp_path):
    module = fake_pynvml.make(fake_pynvml.gpus(2))
    host = HostSources(nvml=Nvml(loader=lambda: module, retry_seconds=0.5))
    log = tmp_path / "work_dirs" / "exp" / "20251111_180600" / "20251111_180600.log"
    w = Writer(log)
    w.fresh()
    agent, base = start_agent(tmp_path / "work_dirs", host=host)
    try:
        assert metric(base, "trainwarden_gpu_temperature_celsius", gpu="1", uuid=module.gpus[1].uuid) == 71
        module.gpus[1].lost = True  # "GPU is lost" mid-run
        wait_for(lambda: metric(base, "trainwarden_collector_success", collector="gpu") == 0, timeout=10)
        w.write(3)  # the run is still read and served
        wait_for(lambda: metric(base, "trainwarden_log_lines_total", run="exp") == w.written)
        status, _, body = get(base + "/api/runs")
        assert status == 200 and "lost" in body
        module.initialized = False  # then the driver goes away entirely (unloaded under us)
        module.library_missing = True
        time.sleep(1.5)
        assert serving(base) and metric(base, "trainwarden_collector_success", collector="gpu") == 0
        module.library_missing = False  # the driver is back, the GPU too
        module.gpus[1].lost = False
        wait_for(lambda: metric(base, "trainwarden_collector_success", collector="gpu") == 1, timeout=15)
        assert metric(base, "trainwarden_gpu_temperature_celsius", gpu="1", uuid=module.gpus[1].uuid) == 71
        w.write(2)
        wait_for(lambda: metric(base, "trainwarden_log_lines_total", run="exp") == w.written)
    finally:
        agent.stop()


@pytest.mark.slow
def test_prometheus_restarted(tmp_path):
    with running_stack(tmp_path) as stack:
        sink, log = stack["sink"], stack["log"]
        with log.open("a", encoding="utf-8") as f:
            f.write(line(100, 1.35))
        wait_for(lambda: any("[RED] TrainingLossExplosion - exp" in t for t in sink.titles()), timeout=30)
        stack["restart_prometheus"]()  # same data dir: the alert's state is restored from ALERTS_FOR_STATE
        time.sleep(8)  # several evaluations of the restarted Prometheus, re-sent to Alertmanager
        assert sum("[RED] TrainingLossExplosion" in t for t in sink.titles()) == 1
        with log.open("a", encoding="utf-8") as f:
            f.write(line(150, 0.30))
        wait_for(lambda: any("[RESOLVED] TrainingLossExplosion - exp" in t for t in sink.titles()), timeout=120,
                 interval=1)
        assert sum("[RED] TrainingLossExplosion" in t for t in sink.titles()) == 1
        assert sum("[RESOLVED] TrainingLossExplosion" in t for t in sink.titles()) == 1
        assert _up(f"http://127.0.0.1:{stack['agent'].address[1]}")
