"""Prints what one search for training processes costs (issue 12, finding 1): `ProcessTracker.discover` for 8 runs
that have no process, with N Python lookalikes running (each names a config and another work dir), beside
whatever else runs on the machine. Real processes, no mocks.

    PYTHONPATH=agent .venv/bin/python bench/process_search.py --lookalikes 30
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from trainwarden.ingest.host.process import ProcessTracker, RunTarget


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lookalikes", type=int, default=30)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="trainwarden-process-search-"))
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", f"configs/c{i}.py", "--work-dir",
                               f"work_dirs/w{i}"], cwd=root) for i in range(args.lookalikes)]
    try:
        deadline = time.monotonic() + 30
        while any(psutil.Process(p.pid).cmdline()[-1:] != [f"work_dirs/w{i}"] for i, p in enumerate(procs)):
            if time.monotonic() > deadline:
                raise SystemExit("the lookalikes did not start within 30 s")
            time.sleep(0.05)
        targets = [RunTarget(f"r{i}", root / "work_dirs" / f"x{i}", [root / f"x{i}.log"], f"x{i}.py")
                   for i in range(args.runs)]
        times = []
        for _ in range(args.repeat):
            tracker = ProcessTracker()
            start = time.perf_counter()
            tracker.discover(targets)
            times.append(time.perf_counter() - start)
        print(f"discover: {args.runs} runs, none found, {args.lookalikes} Python lookalikes, "
              f"{len(psutil.pids())} processes on the machine: median {statistics.median(times) * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms")
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
