"""Prints the agent core's figures (issue 2), each measured in this run against a reference measured alongside:

1. cold start: `trainwarden status --json` on a large MMEngine log, against `grep -c loss:` on the same file
   (median of several runs each; the machines are noisy, so only the ratio means something);
2. latency: a line appended to the watched log, until it shows in /metrics (median and worst of many appends);
3. memory: the peak resident memory of `trainwarden watch` while it reads and then follows that log.

    .venv/bin/python bench/figures.py              # a 1 GB log, generated once under bench/out/
    .venv/bin/python bench/figures.py --size-mb 50 # quicker
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from trainwarden.parse.messages import to_float

HERE = Path(__file__).parent
P = " - mmengine - INFO - "


def generate(path: Path, size: int) -> None:
    """An MMEngine log shaped like the user's run (docs/guide.md): 11439 iterations per epoch logged every
    50, 45 validation progress lines and a Pascal VOC result per epoch, a checkpoint per epoch."""
    rng = random.Random(1)
    ipe, epochs = 11439, 10**6
    t = time.mktime((2025, 11, 11, 18, 6, 0, 0, 0, -1))
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        head = (f"{_ts(t)}{P}Config:\ntrain_cfg = dict(type='EpochBasedTrainLoop', max_epochs={epochs}, val_interval=1)\n"
                f"train_dataloader = dict(batch_size=4, num_workers=4)\n")
        f.write(head)
        written += len(head)
        epoch = 0
        while written < size:
            epoch += 1
            out = []
            for it in range(50, ipe + 50, 50):
                it = min(it, ipe)
                t += 22.8
                loss = 0.27 + 0.05 * math.exp(-epoch / 50) + rng.uniform(-0.01, 0.01)
                out.append(
                    f"{_ts(t)}{P}Epoch(train) [{epoch}][{it:>5}/{ipe}]  base_lr: 4.0000e-05 lr: 4.0000e-05  "
                    f"eta: 1 day, 2:03:04  time: 0.4567  data_time: 0.0123  memory: 5432  grad_norm: {rng.uniform(5, 8):.4f}  "
                    f"loss: {loss:.4f}  loss_rpn_cls: 0.0123  loss_rpn_bbox: 0.0101  loss_cls: {loss * 0.4:.4f}  "
                    f"acc: {rng.uniform(95, 97):.4f}  loss_bbox: {loss * 0.52:.4f}\n"
                )
            out.append(f"{_ts(t)}{P}Saving checkpoint at {epoch} epochs\n")
            for vi in range(50, 2252, 50):
                t += 4.6
                out.append(f"{_ts(t)}{P}Epoch(val)  [{epoch}][{vi:>4}/2252]    eta: 0:03:27  time: 0.0923  "
                           f"data_time: 0.0019  memory: 1207\n")
            out.append(f"{_ts(t)}{P}Epoch(val) [{epoch}][2252/2252]    pascal_voc/mAP: {0.6 + rng.uniform(0, 0.03):.4f}  "
                       f"pascal_voc/AP50: 0.6010  data_time: 0.0020  time: 0.0921\n")
            chunk = "".join(out)
            f.write(chunk)
            written += len(chunk)


def _ts(t: float) -> str:
    return time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(t))


def timed(cmd: list[str], repeat: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        out = result.stdout
    return statistics.median(times), out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(base: str, name: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + "{"):
                return line.rsplit(" ", 1)[1]
    return ""


def peak_rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except Exception:
        return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--appends", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()

    work_dir = args.out / f"run_{args.size_mb}mb"
    session = work_dir / "20251111_180600"
    log = session / "20251111_180600.log"
    if not log.exists() or log.stat().st_size < args.size_mb * 10**6:
        shutil.rmtree(work_dir, ignore_errors=True)
        print(f"generating a {args.size_mb} MB MMEngine log in {log} ...", flush=True)
        generate(log, args.size_mb * 10**6)
    size = log.stat().st_size
    trainwarden = [sys.executable, "-m", "trainwarden"]

    # 1. cold start
    grep_s, grep_out = timed(["grep", "-c", "loss:", str(log)], args.repeat)
    status_s, status_out = timed([*trainwarden, "status", "--json", str(work_dir)], args.repeat)
    run = json.loads(status_out)["runs"][0]
    epochs = len(run["evaluations"])
    print(f"cold start: status --json {status_s:.2f} s, grep -c loss: {grep_s:.2f} s "
          f"(median of {args.repeat}) on {size / 1e9:.2f} GB: ratio {status_s / grep_s:.2f} (requirement: under 3)")
    print(f"  state reached: epoch {run['epoch']} iteration {run['iteration']}, {epochs} evaluations, "
          f"loss {run['loss']}, {int(grep_out)} train lines in the file")

    # 2 and 3. latency and memory of the agent watching that log, with file events and by polling alone
    try:
        for mode in ("file events", "polling only"):
            if watch(trainwarden, work_dir, log, run, args.appends, mode) != 0:
                return 1
    finally:
        with log.open("r+b") as f:
            f.truncate(size)  # leave the generated log as it was for the next run
    return 0


def watch(trainwarden: list[str], work_dir: Path, log: Path, run: dict, appends: int, mode: str) -> int:
    size = log.stat().st_size
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    extra = ["--watch.no-file-events"] if mode == "polling only" else []
    agent = subprocess.Popen([*trainwarden, "watch", str(work_dir), "--web.listen-address", f"127.0.0.1:{port}", *extra],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if metric(base, "trainwarden_train_epoch"):
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            print("agent did not come up")
            return 1
        latencies = []
        last_epoch = run["epoch"] or 1
        for k in range(appends):
            loss = f"{0.1 + k / 1000:.4f}"
            line = (f"{_ts(time.time())}{P}Epoch(train) [{last_epoch}][   50/11439]  lr: 4.0000e-05  eta: 0:01:00  "
                    f"time: 0.4567  data_time: 0.0123  memory: 5432  loss: {loss}  loss_cls: 0.1000\n")
            with log.open("a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                start = time.perf_counter()
            while to_float(metric(base, "trainwarden_train_loss")) != float(loss):
                if time.perf_counter() - start > 10:
                    break
                time.sleep(0.005)
            latencies.append(time.perf_counter() - start)
            time.sleep(0.2)
        print(f"latency ({mode}): appended line in /metrics after {statistics.median(latencies) * 1000:.0f} ms "
              f"median, {max(latencies) * 1000:.0f} ms worst of {len(latencies)} (requirement: within 1 s)")
        peak = peak_rss_bytes(agent.pid)
        if peak is not None:
            print(f"memory ({mode}): peak resident memory of the watching agent {peak / 2**20:.1f} MiB while it read "
                  f"and followed the {size / 1e9:.2f} GB log (requirement: under 80 MB)")
    finally:
        agent.terminate()
        agent.wait(timeout=20)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
