"""The accelerated soak (tests/soak.py), short: 4 runs, about 2.5 hours of training each in 50 s, with a rotation,
a copytruncate, a `kill -9` of the agent and the target down for a stretch. Nothing lost, nothing twice, the state
caught up. bench/soak.py runs it longer and prints the counts."""

from __future__ import annotations

import pytest
from soak import run_soak


@pytest.mark.slow
def test_accelerated_soak(tmp_path):
    result = run_soak(tmp_path, seconds=50, runs=4, rate=10.0)
    print(result)
    assert result["problems"] == [], result
    assert result["faults"] == ["rotated", "killed", "restarted", "truncated", "target down"]
    assert result["explosions"] >= 8 and result["notifications_delivered"] == 2 * result["explosions"]
    assert result["simulated_training_hours_per_run"] >= 2
