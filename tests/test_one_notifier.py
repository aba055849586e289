"""One run, one notifier per host (issue 12, finding 5): `trainwarden run` beside a `trainwarden watch` of the same
work dir, and two watches of it, agree through the run's lock in the state folder on which of them sends its
notifications. Real agents in child processes, each with its own local json:// sink; no mocks."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, wait_for
from sinks import HttpSink
from test_agent import line, train_line, value

from trainwarden.app.run_lock import FileLock, NotifyGate

NAN = "[RED] TrainingLossNotFinite - exp"
OOM = "[RED] TrainingCUDAOutOfMemory - exp"
# a training that waits to be told to end
TRAINER = r'''
import pathlib, sys, time
finish = pathlib.Path(sys.argv[sys.argv.index("--finish") + 1])
while not finish.exists():
    time.sleep(0.05)
'''


def _now() -> str:
    return time.strftime("%Y/%m/%d %H:%M:%S")


@pytest.fixture
def live_run(tmp_path):
    """A run being written: work_dirs/exp/<session>/<session>.log; returns (work dir, a function that appends)."""
    wd = tmp_path / "work_dirs" / "exp"
    log = wd / "20251201_120000" / "20251201_120000.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(line(_now(), train_line(1, 50, "0.3000")))

    def append(text: str, level: str = "INFO") -> None:
        with log.open("ab") as fh:
            fh.write(line(_now(), text).replace(b" - INFO - ", f" - {level} - ".encode(), 1))

    return wd, append


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "trainwarden.yml"
    path.write_text(f"notify:\n  host: box\n  state_dir: {tmp_path / 'state'}\n  resolve_after_seconds: 0\n",
                    encoding="utf-8")
    return path


class Agents:
    """Child `trainwarden` processes with their stderr in files (read while they run)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, *argv: str) -> tuple[subprocess.Popen, Path]:
        err = self.tmp_path / f"{name}.stderr"
        proc = subprocess.Popen([sys.executable, "-m", "trainwarden", "--log.level", "info", *argv],
                                stdout=subprocess.DEVNULL, stderr=err.open("wb"))
        self.procs.append(proc)
        return proc, err

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)


@pytest.fixture
def agents(tmp_path):
    a = Agents(tmp_path)
    yield a
    a.close()


def said(err: Path, text: str, times: int = 1) -> bool:
    return err.read_text(encoding="utf-8", errors="replace").count(text) >= times


def metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def judged_twice(port: int) -> None:
    """The watch judged for its notifier twice more (each judgement times itself anew)."""
    for _ in range(2):
        before = value(metrics(port), "trainwarden_collector_duration_seconds", collector="evaluate")
        wait_for(lambda b=before: value(metrics(port), "trainwarden_collector_duration_seconds", collector="evaluate")
                 not in (None, b), timeout=30, interval=0.2)


def test_run_beside_a_watch_of_its_work_dir_notifies_once(tmp_path, live_run, config, agents):
    wd, append = live_run
    watch_sink, run_sink = HttpSink(), HttpSink()
    try:
        port = free_port()
        _, watch_err = agents.start("watch", "watch", str(wd.parent), "--config.file", str(config), "--notify",
                                    watch_sink.url(), "--web.listen-address", f"127.0.0.1:{port}")
        wait_for(lambda: said(watch_err, "run exp: this agent sends its notifications"), timeout=60)
        trainer = tmp_path / "train.py"
        trainer.write_text(TRAINER, encoding="utf-8")
        finish = tmp_path / "finish"
        run, run_err = agents.start("run", "run", "--config.file", str(config), "--notify", run_sink.url(), "--",
                                    sys.executable, str(trainer), "cfg.py", "--work-dir", str(wd), "--finish", str(finish))
        # `run` started second and takes the run over: it knows the exit code and the console
        wait_for(lambda: said(watch_err, "run exp: `trainwarden run` supervises it"), timeout=60)
        wait_for(lambda: said(run_err, "run exp: this agent sends its notifications"), timeout=60)
        append(train_line(1, 100, "nan"))
        wait_for(lambda: run_sink.delivered_titles()[f"{NAN} on box"] == 1, timeout=60)
        wait_for(lambda: "TrainingLossNotFinite" in metrics(port), timeout=30)
        judged_twice(port)  # the watch saw the red and judged it: it did not send it
        assert not [t for t in watch_sink.delivered_titles() if "TrainingLossNotFinite" in t], watch_sink.titles()
        finish.touch()
        assert run.wait(timeout=120) == 0
        # `run` is gone: the watch notifies again, and what `run` sent is not sent again
        wait_for(lambda: said(watch_err, "run exp: this agent sends its notifications", times=2), timeout=60)
        judged_twice(port)
        titles = watch_sink.delivered_titles() + run_sink.delivered_titles()
        assert titles[f"{NAN} on box"] == 1, titles
        assert sum(n for t, n in titles.items() if "ProcessExited" in t and t.startswith("[RED]")) <= 1, titles
    finally:
        watch_sink.close()
        run_sink.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_the_notifying_watch_killed_the_other_takes_over_and_a_red_goes_out_once(tmp_path, live_run, config, agents):
    wd, append = live_run
    first_sink, second_sink = HttpSink(), HttpSink()
    try:
        first_port, second_port = free_port(), free_port()
        first, first_err = agents.start("first", "watch", str(wd.parent), "--config.file", str(config), "--notify",
                                        first_sink.url(), "--web.listen-address", f"127.0.0.1:{first_port}")
        wait_for(lambda: said(first_err, "run exp: this agent sends its notifications"), timeout=60)
        _, second_err = agents.start("second", "watch", str(wd), "--config.file", str(config), "--notify",
                                     second_sink.url(), "--web.listen-address", f"127.0.0.1:{second_port}")
        wait_for(lambda: value(metrics(second_port), "trainwarden_train_loss", run="exp") == 0.3, timeout=60)
        append(train_line(1, 100, "nan"))
        wait_for(lambda: first_sink.delivered_titles()[f"{NAN} on box"] == 1, timeout=60)
        wait_for(lambda: "TrainingLossNotFinite" in metrics(second_port), timeout=30)
        judged_twice(second_port)
        assert not second_sink.received, second_sink.titles()  # one notifier: the first
        first.kill()  # SIGKILL: no clean-up, the OS lock goes with the process
        wait_for(lambda: said(second_err, "run exp: this agent sends its notifications"), timeout=60)
        judged_twice(second_port)
        assert not [t for t in second_sink.delivered_titles() if "TrainingLossNotFinite" in t]  # it went out once
        append("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", level="ERROR")
        wait_for(lambda: second_sink.delivered_titles()[f"{OOM} on box"] == 1, timeout=60)
        assert first_sink.delivered_titles()[f"{OOM} on box"] == 0
    finally:
        first_sink.close()
        second_sink.close()


def test_the_lock_is_the_operating_systems(tmp_path):
    """Taken by one holder at a time, free again when let go or when its process dies."""
    path = tmp_path / "locks" / "x.notify.lock"
    a, b = FileLock(path), FileLock(path)
    assert a.acquire() and not b.acquire() and not b.is_free()
    a.release()
    assert b.acquire()
    b.release()
    hold = ("import pathlib, sys, time; sys.path.insert(0, sys.argv[2]); from trainwarden.app.run_lock import FileLock\n"
            "lock = FileLock(pathlib.Path(sys.argv[1])); assert lock.acquire(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(path), str(Path(__file__).parents[1] / "agent")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not a.acquire()
        holder.kill()
        holder.wait(timeout=10)
        wait_for(a.acquire, timeout=10)
    finally:
        a.release()
        if holder.poll() is None:
            holder.kill()
    gate = NotifyGate(tmp_path / "locks", supervised=tmp_path / "wd")
    assert not NotifyGate(tmp_path / "locks", supervised=tmp_path / "wd")._supervising.held  # one `run` per work dir
    gate.close()
