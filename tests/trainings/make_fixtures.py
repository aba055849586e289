"""Writes tests/fixtures/mmengine-live/: one real run of each scenario of scripted.py, the files MMEngine wrote
(logs, vis_data/scalars.json, config dumps, checkpoints, last_checkpoint), copied byte for byte.

    python tests/trainings/make_fixtures.py [OUT]      # OUT defaults to tests/fixtures/mmengine-live

Needs torch and mmengine (`pip install -e '.[dev]'` brings the `trainers` extra). The runs are written into a
temporary folder first and then copied, so OUT only ever holds complete runs.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
SCRIPT = HERE / "scripted.py"
DEFAULT_OUT = HERE.parent / "fixtures" / "mmengine-live"


def train(work_dir: Path, scenario: str, build: str, *extra: str) -> int:
    cmd = [sys.executable, str(SCRIPT), "--work-dir", str(work_dir), "--scenario", scenario, "--build", build, *extra]
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300).returncode


def train_and_kill(work_dir: Path, at: str) -> int:
    """SIGKILL the training once its log holds `at` (mid-epoch): nothing of MMEngine's runs after that."""
    cmd = [sys.executable, str(SCRIPT), "--work-dir", str(work_dir), "--scenario", "healthy", "--build", "python"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not any(at in log.read_text(encoding="utf-8") for log in work_dir.glob("*/*.log")):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the training ended before its log showed {at!r}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=30)


def under_run(work_dir: Path, scenario: str) -> int:
    """The training under `trainwarden run`, which keeps its console (the traceback) in the work dir."""
    cmd = [sys.executable, "-m", "trainwarden", "run", "--", sys.executable, str(SCRIPT), "--work-dir", str(work_dir),
           "--scenario", scenario, "--build", "cfg"]
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300).returncode


def make(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="mmengine-live-") as tmp:
        root = Path(tmp)
        codes = {
            "healthy_from_cfg": [train(root / "healthy_from_cfg", "healthy", "cfg")],
            "healthy_in_python": [train(root / "healthy_in_python", "healthy", "python")],
            "loss_explosion": [train(root / "loss_explosion", "explosion", "cfg")],
            "loss_nan": [train(root / "loss_nan", "nan", "python")],
            "early_stop": [train(root / "early_stop", "earlystop", "cfg")],
            "killed_mid_epoch": [train_and_kill(root / "killed_mid_epoch", "Epoch(train) [3][ 4/10]")],
            "cuda_oom_under_run": [under_run(root / "cuda_oom_under_run", "oom")],
            "crash_then_resume": [train(root / "crash_then_resume", "crash", "cfg"),
                                  train(root / "crash_then_resume", "healthy", "cfg", "--resume")],
            "second_training": [train(root / "second_training", "healthy", "cfg"),
                                train(root / "second_training", "healthy", "cfg")],
        }
        for name, got in codes.items():
            print(f"{name}: exit {got}")
        out.mkdir(parents=True, exist_ok=True)
        for name in codes:
            shutil.rmtree(out / name, ignore_errors=True)
            shutil.copytree(root / name, out / name)


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
