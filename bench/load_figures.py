"""Prints the agent's cost under load (issue 7), each against a reference measured in the same run:

1. watching: 8 runs each writing one line a second, /metrics scraped every 15 s, 8 (fake) GPUs: the agent's CPU
   (percent of one core) and resident memory over `--seconds`; reference: `tail -F` following the same 8 logs
   (what a hand-run watcher costs). Goals: under 1 % of a core, under 80 MB.
2. scrape latency at scale: 50 runs (two epochs of history and evaluations each) and 8 GPUs, one /metrics request
   every 1.1 s (so each builds its document afresh, as Prometheus' 15 s scrapes do), in OpenMetrics (what Prometheus
   asks for) and the plain text format in turn; reference: /healthz on the same server (the HTTP floor).
   Goal: under 50 ms.

    .venv/bin/python bench/load_figures.py               # about 3.5 minutes
    .venv/bin/python bench/load_figures.py --seconds 60  # quicker, noisier
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from conftest import free_port  # noqa: E402
from stack import first_lines, line  # noqa: E402


def make_runs(root: Path, n: int, epochs_of_history: int = 0) -> list[Path]:
    logs = []
    for k in range(n):
        session = root / f"run{k:02d}" / "20251111_180600"
        session.mkdir(parents=True)
        log = session / "20251111_180600.log"
        text = first_lines()
        for epoch in range(2, 2 + epochs_of_history):
            text += "".join(line(it, 0.3 - 0.01 * epoch, epoch=epoch) for it in range(50, 1001, 50))
            text += (f"{time.strftime('%Y/%m/%d %H:%M:%S')} - mmengine - INFO - Epoch(val) [{epoch}][2252/2252]    "
                     f"pascal_voc/mAP: {0.59 + 0.005 * epoch:.4f}  pascal_voc/AP50: 0.7000  data_time: 0.0020  time: 0.0921\n")
        log.write_text(text, encoding="utf-8")
        (session.parent / "epoch_1.pth").write_bytes(b"x")
        logs.append(log)
    return logs


def start_agent(root: Path, gpus: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "fake_gpu_agent.py"), str(root), str(port), str(gpus)])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):
                return proc, base
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the agent did not come up")


OPENMETRICS = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
               "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # the Accept header of Prometheus 2.x scrapes


def get(url: str, accept: str | None = None) -> bytes:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system + getattr(t, "children_user", 0) + getattr(t, "children_system", 0)


def watching(seconds: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="trainwarden-load-"))
    try:
        logs = make_runs(tmp / "work_dirs", 8)
        agent, base = start_agent(tmp / "work_dirs", gpus=8)
        tail = subprocess.Popen(["tail", "-q", "-F", *map(str, logs)], stdout=subprocess.DEVNULL)
        stop = threading.Event()

        def write() -> None:  # one line a second to each run, spread over the second
            it = 200
            while not stop.is_set():
                it += 1
                for log in logs:
                    with log.open("a", encoding="utf-8") as f:
                        f.write(line(it % 1000 + 1, 0.3))
                    if stop.wait(1 / len(logs)):
                        return

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(5)  # cold scans done, caches warm
        pa, pt = psutil.Process(agent.pid), psutil.Process(tail.pid)
        a0, t0, w0 = cpu_seconds(pa), cpu_seconds(pt), time.monotonic()
        peak = 0
        next_scrape = w0
        while time.monotonic() - w0 < seconds:
            if time.monotonic() >= next_scrape:
                get(base + "/metrics")  # Prometheus' default scrape interval
                next_scrape += 15
            peak = max(peak, pa.memory_info().rss)
            time.sleep(1)
        wall = time.monotonic() - w0
        agent_cpu = (cpu_seconds(pa) - a0) / wall * 100
        tail_cpu = (cpu_seconds(pt) - t0) / wall * 100
        stop.set()
        writer.join()
        rss = pa.memory_info().rss
        agent.terminate()
        tail.terminate()
        agent.wait(timeout=30)
        tail.wait(timeout=30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"watching 8 runs x 1 line/s, scraped every 15 s, 8 GPUs, {wall:.0f} s: agent {agent_cpu:.2f} % of one core "
          f"(goal < 1 %), `tail -F` of the same logs {tail_cpu:.2f} % (ratio {agent_cpu / max(tail_cpu, 0.01):.1f}x); "
          f"resident memory {rss / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB (goal < 80 MB)")


def scrape_latency(scrapes: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="trainwarden-scale-"))
    try:
        make_runs(tmp / "work_dirs", 50, epochs_of_history=2)
        agent, base = start_agent(tmp / "work_dirs", gpus=8)
        while sum(r.get("iteration") is not None for r in json.loads(get(base + "/api/runs"))["runs"]) < 50:
            time.sleep(0.2)  # every run found and read
        body = get(base + "/metrics")
        series = sum(1 for x in body.decode().splitlines() if x and not x.startswith("#"))
        metrics, floor = [], []
        rng = random.Random(1)
        for k in range(scrapes):
            time.sleep(1.1 + rng.uniform(0, 0.1))  # past the agent's 1 s document cache: each scrape builds anew
            start = time.perf_counter()
            get(base + "/metrics", OPENMETRICS if k % 2 else None)  # Prometheus' format and the plain one in turn
            metrics.append(time.perf_counter() - start)
            start = time.perf_counter()
            get(base + "/healthz")
            floor.append(time.perf_counter() - start)
        agent.terminate()
        agent.wait(timeout=30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    metrics.sort()
    med, p99 = statistics.median(metrics), metrics[int(0.99 * (len(metrics) - 1))]
    print(f"/metrics with 50 runs x 8 GPUs ({series} series, OpenMetrics and text in turn): {med * 1000:.1f} ms median, "
          f"{p99 * 1000:.1f} ms p99, "
          f"{max(metrics) * 1000:.1f} ms worst of {len(metrics)} (goal < 50 ms); /healthz on the same server "
          f"{statistics.median(floor) * 1000:.2f} ms median (ratio {med / statistics.median(floor):.0f}x)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120, help="how long the watching load is measured")
    parser.add_argument("--scrapes", type=int, default=60)
    args = parser.parse_args()
    watching(args.seconds)
    scrape_latency(args.scrapes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
