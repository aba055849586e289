"""Prints the stack's figure (issue 5): with the real Prometheus and Alertmanager at 1 s scrape and evaluation
intervals, the time from a logged loss above 1.0 to the bridge's apprise message at a local json:// target.

    .venv/bin/python bench/stack_figures.py [--trials 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from stack import line, running_stack


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    took = []
    for k in range(args.trials):
        with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp)) as stack:
            time.sleep(2)
            with stack["log"].open("a", encoding="utf-8") as f:
                f.write(line(100 + k, 1.35))
            start = time.perf_counter()
            while not any("TrainingLossExplosion" in t for t in stack["sink"].titles()):
                if time.perf_counter() - start > 60:
                    break
                time.sleep(0.01)
            took.append(time.perf_counter() - start)
    print(f"stack latency: loss above 1.0 to the bridge's message in {statistics.median(took):.2f} s median, "
          f"{max(took):.2f} s worst of {len(took)} (1 s scrape and evaluation; requirement: under 5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
