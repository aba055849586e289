"""Prints the counts of an accelerated soak (tests/soak.py): several runs, hours of training each compressed into
minutes, a real `trainwarden watch` notifying a local sink, with a log rotated, a log truncated, the agent killed
with `kill -9` and restarted, and the target down for a stretch. Exits 1 when anything was lost or sent twice.

    .venv/bin/python bench/soak.py                          # 8 runs, 5 minutes: about 25 hours of training each
    .venv/bin/python bench/soak.py --seconds 60 --runs 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from soak import run_soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--rate", type=float, default=10.0, help="log lines a second per run")
    parser.add_argument("--no-faults", action="store_true", help="the load alone (the agent's memory over time)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_soak(Path(tmp), args.seconds, args.runs, args.rate, faults=not args.no_faults)
    print(json.dumps(result, indent=1))
    print(f"soak: {result['runs']} runs x {result['simulated_training_hours_per_run']} h of training in "
          f"{result['seconds']:.0f} s, {result['lines_written']} lines, faults: {', '.join(result['faults']) or 'none'}; "
          f"{result['explosions']} loss explosions -> {result['notifications_delivered']}/"
          f"{result['notifications_expected']} notifications delivered, {result['missing']} missing, "
          f"{result['twice']} twice; agent peak RSS {result['agent_peak_rss_mib']} MiB (every 10 s: "
          f"{result['agent_peak_rss_every_10s_mib']}); problems: "
          f"{result['problems'] or 'none'}")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
