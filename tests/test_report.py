"""The typed status report: built once from snapshots and judgements, frozen, and read back from its JSON form
(another agent's /api/runs) into the same types, losing nothing."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import DESIGN, REAL
from test_evaluate import CASES, scenario_report

from trainwarden.ingest.fleet import Fleet
from trainwarden.judge.policy import DEFAULT_POLICY
from trainwarden.model import RunReport, StatusReport
from trainwarden.model.codec import from_plain
from trainwarden.outputs.status import document, status_report, to_json

NOW = 1_800_000_000.0


def fixture_report(root) -> StatusReport:
    fleet = Fleet([root])
    fleet.rediscover()
    return status_report(fleet.snapshots(), DEFAULT_POLICY, NOW)


@pytest.mark.parametrize("root", [REAL, DESIGN], ids=["real-logs", "design-shapes"])
def test_a_document_read_back_is_the_same_report(root):
    report = fixture_report(root)
    assert report.runs
    plain = json.loads(to_json(report))
    again = from_plain(StatusReport, plain)
    assert again == report
    assert document(again) == plain


@pytest.mark.parametrize(("name", "kwargs"), [(c[0], c[1]) for c in CASES], ids=[c[0] for c in CASES])
def test_every_scenario_survives_the_round_trip(name, kwargs):
    report, _ = scenario_report(**kwargs)
    assert from_plain(StatusReport, json.loads(to_json(report))) == report


def test_reports_and_snapshots_are_frozen():
    report = fixture_report(REAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.runs[0].health = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        next(r for r in report.runs if r.conditions).conditions[0].summary = "x"  # type: ignore[misc]


def test_a_foreign_document_is_read_tolerantly():
    """An older or newer agent: unknown keys are ignored, missing ones take their defaults, wrong types are None."""
    doc = {"runs": [{"run": "r", "work_dir": "/w", "state": "stalled", "loss": "high", "epoch": 3, "new_key": {"x": 1},
                     "conditions": [{"alert": "TrainingStalled", "severity": "critical", "summary": "s",
                                     "description": "d", "runbook": None, "since": None, "run": "r"}]}],
           "gpus": [{"index": 0, "uuid": "GPU-0", "memory_used_bytes": 1.0e10, "runs": ["r"]}]}
    report = from_plain(StatusReport, doc)
    run = report.runs[0]
    assert isinstance(run, RunReport) and run.state == "stalled" and run.loss is None and run.epoch == 3
    assert run.conditions[0].key == "TrainingStalled|r"
    assert report.gpus[0].gpu.memory_used_bytes == 10**10 and report.gpus[0].runs == ("r",)
    with pytest.raises(TypeError):
        from_plain(StatusReport, ["not", "a", "document"])
