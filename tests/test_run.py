"""`trainwarden run` with real child processes: console capture, OOM and tracebacks, exit codes, signals
forwarded, auto-resume with half the batch size, and the notifications that go with them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli, wait_for
from sinks import HttpSink

from trainwarden.app.supervise import with_resume, work_dir_of

# A stand-in for tools/train.py: writes an MMEngine log into its work dir like MMEngine does, then behaves as
# told by its arguments (OOM, crash, success). The second attempt after an OOM must come with batch_size=2.
TRAIN = r'''
import os, sys, time
args = sys.argv[1:]
work_dir = args[args.index("--work-dir") + 1]
mode = args[args.index("--mode") + 1]
stamp = time.strftime("%Y%m%d_%H%M%S")
session = os.path.join(work_dir, stamp)
os.makedirs(session, exist_ok=True)
batch = 2 if "train_dataloader.batch_size=2" in args else 4
P = " - mmengine - INFO - "
with open(os.path.join(session, stamp + ".log"), "a") as log:
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    log.write(f"{now}{P}Config:\ntrain_cfg = dict(type='EpochBasedTrainLoop', max_epochs=5, val_interval=1)\n"
              f"train_dataloader = dict(batch_size={batch}, num_workers=2)\n")
    log.write(f"{now}{P}Epoch(train)  [1][  50/1000]  lr: 4.0000e-05  eta: 0:10:00  time: 0.4567  data_time: 0.0123  "
              "memory: 5432  loss: 0.3000  loss_cls: 0.1200\n")
if mode == "sleep":
    import signal
    signal.signal(signal.SIGTERM, lambda *a: (print("child got SIGTERM", flush=True), sys.exit(0)))
print("training started with batch size", batch, flush=True)
time.sleep(1.5)
if "--resume" in args and batch == 2:
    print("resumed and finished", flush=True)
    sys.exit(0)
if mode == "oom":
    print("Traceback (most recent call last):", file=sys.stderr)
    print('  File "tools/train.py", line 133, in <module>', file=sys.stderr)
    print("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB", file=sys.stderr, flush=True)
    sys.exit(1)
if mode == "sleep":
    time.sleep(60)
sys.exit(int(mode))
'''


@pytest.fixture
def train_script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(TRAIN, encoding="utf-8")
    return path


def test_work_dir_and_resume_commands():
    assert work_dir_of(["python", "tools/train.py", "configs/a/b_c.py"]) == Path("work_dirs/b_c")
    assert work_dir_of(["python", "tools/train.py", "x.py", "--work-dir", "wd/run"]) == Path("wd/run")
    assert work_dir_of(["python", "tools/train.py", "x.py", "--work-dir=wd/r2"]) == Path("wd/r2")
    assert work_dir_of(["bash", "go.sh"]) is None
    cmd = ["python", "tools/train.py", "x.py", "--cfg-options", "optim_wrapper.optimizer.lr=4e-5"]
    assert with_resume(cmd, "mmengine", 2) == [*cmd[:4], "train_dataloader.batch_size=2", cmd[4], "--resume"]
    assert with_resume(["python", "t.py", "c.py", "--resume"], "mmengine", None) == ["python", "t.py", "c.py", "--resume"]
    assert with_resume(["python", "t.py", "c.py"], "mmcv", 2)[-3:] == ["--auto-resume", "--cfg-options",
                                                                        "data.samples_per_gpu=2"]


def _state(tmp_path):
    cfg = tmp_path / "cfg.yml"
    cfg.write_text(f"notify:\n  state_dir: {tmp_path / 'state'}\n  resolve_after_seconds: 0\n", encoding="utf-8")
    return cfg


def test_oom_is_caught_notified_and_resumed_with_half_the_batch(tmp_path, train_script):
    sink = HttpSink()
    try:
        wd = tmp_path / "work_dirs" / "exp_oom"
        result = run_cli("run", "--config.file", str(_state(tmp_path)), "--notify", sink.url(), "--auto-resume", "1",
                         "--", sys.executable, str(train_script), "cfg.py", "--work-dir", str(wd), "--mode", "oom",
                         timeout=120)
        assert result.returncode == 0, result.stderr
        assert "training started with batch size 4" in result.stdout  # the child's output reaches the terminal
        assert "training started with batch size 2" in result.stdout and "resumed and finished" in result.stdout
        assert "CUDA out of memory" in result.stderr
        consoles = sorted(wd.glob("trainwarden-console-*.log"))
        assert len(consoles) == 2
        first = consoles[0].read_text(encoding="utf-8")
        assert "torch.cuda.OutOfMemoryError: CUDA out of memory" in first and "exited with code 1" in first
        assert "exited with code 0" in consoles[1].read_text(encoding="utf-8")
        titles = sink.titles()
        assert any("TrainingCUDAOutOfMemory - exp_oom" in t for t in titles), titles
        assert any("auto-resume - exp_oom" in t for t in titles), titles
        body = next(m["message"] for m in sink.received if "auto-resume" in m["title"])
        assert "--resume" in body and "train_dataloader.batch_size=2" in body and "batch size 2" in body
    finally:
        sink.close()


def test_a_crash_is_notified_with_its_exit_code(tmp_path, train_script):
    sink = HttpSink()
    try:
        wd = tmp_path / "work_dirs" / "exp_crash"
        result = run_cli("run", "--config.file", str(_state(tmp_path)), "--notify", sink.url(), "--",
                         sys.executable, str(train_script), "cfg.py", "--work-dir", str(wd), "--mode", "3", timeout=120)
        assert result.returncode == 3
        # no waiting here: `run` returns only once its agent has read the exit, judged it and delivered the message
        assert any("TrainingProcessExited" in t for t in sink.titles()), sink.titles()
        body = next(m["message"] for m in sink.received if "TrainingProcessExited" in m["title"])
        assert "exited with code 3" in body
    finally:
        sink.close()


def test_a_command_that_dies_before_any_log_is_still_reported(tmp_path):
    sink = HttpSink()
    try:
        result = run_cli("run", "--config.file", str(_state(tmp_path)), "--notify", sink.url(), "--work-dir",
                         str(tmp_path / "wd"), "--", sys.executable, "-c", "raise SystemExit('config not found')",
                         timeout=120)
        assert result.returncode == 1
        assert any("TrainingProcessExited - wd" in t for t in sink.titles())
    finally:
        sink.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_signals_are_forwarded(tmp_path, train_script):
    wd = tmp_path / "work_dirs" / "exp_sig"
    proc = subprocess.Popen([sys.executable, "-m", "trainwarden", "run", "--config.file", str(_state(tmp_path)), "--",
                             sys.executable, str(train_script), "cfg.py", "--work-dir", str(wd), "--mode", "sleep"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(wd.glob("trainwarden-console-*.log")) and
             "started" in next(wd.glob("trainwarden-console-*.log")).read_text(), timeout=30)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert "child got SIGTERM" in out and proc.returncode == 0


def test_usage_errors():
    assert run_cli("run").returncode == 2
    assert run_cli("run", "--", "bash", "go.sh").returncode == 2  # no work dir to be found
    assert run_cli("run", "--auto-resume", "-1", "--work-dir", "x", "--", "true").returncode == 2


def test_console_errors_reach_a_separate_watch(tmp_path, train_script):
    """A console capture made another way (nohup, tee): `watch --console FILE` reads its errors."""
    wd = tmp_path / "work_dirs" / "exp_tee"
    session = wd / "20251111_180600"
    session.mkdir(parents=True)
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    (session / "20251111_180600.log").write_text(
        f"{now} - mmengine - INFO - Epoch(train)  [1][  50/1000]  lr: 4.0000e-05  eta: 0:10:00  time: 0.4567  "
        "loss: 0.3000\n", encoding="utf-8")
    console = tmp_path / "nohup.out"
    console.write_text("Traceback (most recent call last):\nRuntimeError: CUDA out of memory. Tried to allocate 2.00 MiB\n",
                       encoding="utf-8")
    os.utime(console, None)
    result = run_cli("status", "--json", "--console", f"exp_tee={console}", str(wd))
    import json

    run = json.loads(result.stdout)["runs"][0]
    assert run["log"]["errors_total"]["cuda_oom"] == 1
    assert "TrainingCUDAOutOfMemory" in {c["alert"] for c in run["conditions"]}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_training_killed_by_a_signal(tmp_path, train_script):
    sink = HttpSink()
    try:
        wd = tmp_path / "work_dirs" / "exp_killed"
        script = tmp_path / "killed.py"
        script.write_text(TRAIN.replace("sys.exit(int(mode))", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
                          encoding="utf-8")
        result = run_cli("run", "--config.file", str(_state(tmp_path)), "--notify", sink.url(), "--",
                         sys.executable, str(script), "cfg.py", "--work-dir", str(wd), "--mode", "0", timeout=120)
        assert result.returncode == 128 + 9
        body = next(m["message"] for m in sink.received if "TrainingProcessExited" in m["title"])
        assert "exited with code -9" in body
    finally:
        sink.close()
