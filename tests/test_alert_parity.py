"""The two alert engines agree: every scenario of the evaluator's table (tests/test_evaluate.py: the user's guide
profile and the neutral defaults, each with "does not fire" cases) is judged under both policies, live and as a
history run (last written 30 days before the agent first read it), by the
agent (the registry's conditions) and, through the agent's own /metrics exposition, by the Prometheus rules in
`promtool test rules`; the alerts that fire, with their run and severity, must be the same.

All scenarios go to one promtool run, each under its own `instance` label (every rule joins on instance, job and
run, so they cannot meet). promtool is asked to expect no alert at all for every rule, so each alert that does fire
is reported back with its labels ("got: ..."): what Prometheus fires is read from promtool itself, not assumed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REAL, require_binary
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_evaluate import CASES, GUIDE, NEUTRAL, UP, scenario_report

from trainwarden.app.agent import Agent
from trainwarden.judge.rules.registry import RULES, is_host_rule, runbook_url
from trainwarden.model import Severity, StatusReport
from trainwarden.outputs.metrics import CollectorStats, make_registry

RULES_FILE = Path(__file__).parent.parent / "alerts" / "trainwarden.rules.yml"
EVAL_SECONDS = 1200  # promtool's clock at the evaluation: 20 minutes of constant series, every `for:` long held
GOT = re.compile(r"Labels:\{([^}]*)\}")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
OLD = 30 * 86400.0  # a history run: last written 30 days before the agent first read it (and judged then)
PAGES = (Severity.CRITICAL, Severity.WARNING)


def variants() -> list[tuple[str, dict]]:
    """Every scenario under the guide profile and under the neutral defaults (a case with a policy of its own keeps
    it), each live and as a history run."""
    out = []
    for name, kwargs, *_ in CASES:
        base = name.removeprefix("neutral: ").removeprefix("guide: ")
        own = kwargs.get("policy", GUIDE)
        policies = {"guide": GUIDE, "neutral": NEUTRAL} if own in (GUIDE, NEUTRAL) else {"own policy": own}
        for label, policy in policies.items():
            live = {**kwargs, "policy": policy}
            out.append((f"{base} [{label}]", live))
            out.append((f"{base} [{label}, history]", {**live, "quiet": OLD, "first_seen_after": OLD}))
    # back to life: first read 30 days after a line, the log moved since (the agent's clock is before the last
    # line); and exactly history_after_seconds quiet when first read, which is not yet history
    out.append(("stalled, first read before its last line [guide]", {"quiet": 3600, "first_seen_after": -60.0}))
    out.append(("crashed, first read before it ended [neutral]",
                {"policy": NEUTRAL, "first_seen_after": -60.0,
                 "process": {**UP, "up": False, "exit_code": 1, "end_timestamp_seconds": None}}))
    at_limit = GUIDE.history_after_seconds
    out.append(("quiet exactly history_after_seconds when first read [guide]",
                {"quiet": at_limit, "first_seen_after": at_limit}))
    seen = {}
    for name, kwargs in out:  # the neutral table's cases under the neutral defaults are the table's own: once each
        seen.setdefault(name, kwargs)
    return list(seen.items())


VARIANTS = variants()


def agent_alerts(report: StatusReport) -> set[tuple[str, str, str]]:
    fired = {(c.alert, c.run or "", c.severity.value) for r in report.runs for c in r.conditions if not is_host_rule(c.alert)}
    return fired | {(c.alert, "", c.severity.value) for c in report.conditions}


def series(report: StatusReport, now: float, instance: str) -> list[dict]:
    """The exposition as promtool input series: constant values, timestamps moved onto promtool's clock."""
    text = generate_latest(make_registry(lambda: report, CollectorStats())).decode()
    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            value = sample.value
            if "timestamp_seconds" in sample.name:
                value -= now - EVAL_SECONDS
            labels = {**sample.labels, "instance": instance, "job": "trainwarden"}
            selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            shown = "NaN" if value != value else repr(float(value))
            out.append({"series": f"{sample.name}{{{selector}}}", "values": f"{shown}+0x30"})
    return out


def prometheus_alerts(path: Path, reports: dict[str, tuple[StatusReport, float]]) -> dict[str, set[tuple[str, str, str]]]:
    """What the rules fire for each report, by one promtool run: each report's series under its own instance."""
    inputs = [s for instance, (report, now) in reports.items() for s in series(report, now, instance)]
    test = {"rule_files": [str(RULES_FILE)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": inputs,
        "alert_rule_test": [{"eval_time": f"{EVAL_SECONDS}s", "alertname": r.name, "exp_alerts": []} for r in RULES],
    }]}
    path.write_text(yaml.safe_dump(test), encoding="utf-8")
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(path)], capture_output=True, text=True,
                            timeout=300)
    output = result.stdout + result.stderr
    fired: dict[str, set[tuple[str, str, str]]] = {instance: set() for instance in reports}
    for block in GOT.findall(output):
        labels = dict(LABEL.findall(block))
        fired[labels["instance"]].add((labels["alertname"], labels.get("run", ""), labels.get("severity", "")))
    if result.returncode != 0 and not any(fired.values()):
        raise AssertionError(f"promtool failed without a fired alert:\n{output}")
    return fired


@pytest.fixture(scope="module")
def judged(tmp_path_factory) -> dict[str, tuple[StatusReport, set[tuple[str, str, str]]]]:
    """Each variant's report and the alerts Prometheus fires for it."""
    reports = {f"case{i}:9841": scenario_report(**kwargs) for i, (_, kwargs) in enumerate(VARIANTS)}
    fired = prometheus_alerts(tmp_path_factory.mktemp("parity") / "parity.test.yml", reports)
    return {name: (reports[f"case{i}:9841"][0], fired[f"case{i}:9841"]) for i, (name, _) in enumerate(VARIANTS)}


@pytest.mark.parametrize("name", [name for name, _ in VARIANTS])
def test_agent_and_prometheus_fire_the_same_alerts(judged, name):
    report, prometheus = judged[name]
    assert agent_alerts(report) == prometheus


@pytest.mark.parametrize("name", [name for name, _ in VARIANTS if name.endswith("history]")])
def test_a_history_run_pages_in_neither_engine(judged, name):
    """Finding 3: a run quiet for 30 days when first read is history (unless its process is up): no red or yellow of
    its own in the agent nor in Prometheus (the host's GPU alerts are the host's, not the run's)."""
    report, prometheus = judged[name]
    run = report.runs[0]
    if run.process is not None and run.process.up:
        assert not run.history  # a live process is never history: judged in full
        return
    assert run.history
    assert not [c.alert for c in run.conditions if c.severity in PAGES and not is_host_rule(c.alert)]
    assert not [a for a, r, severity in prometheus if r and severity in ("critical", "warning")]


@pytest.mark.parametrize(("name", "alert"), [
    ("stalled, first read before its last line [guide]", "TrainingStalled"),
    ("crashed, first read before it ended [neutral]", "TrainingProcessExited"),
    ("quiet exactly history_after_seconds when first read [guide]", "TrainingStalled"),
])
def test_a_run_whose_log_moved_after_it_was_first_read_pages(judged, name, alert):
    """Not history: the log moved after the agent first read it (or it was not yet quiet for longer than
    history_after_seconds): both engines page."""
    report, prometheus = judged[name]
    assert not report.runs[0].history
    assert (alert, "run", "critical") in prometheus and (alert, "run", "critical") in agent_alerts(report)


def test_every_rule_carries_the_registry_runbook_as_a_full_link():
    """`runbook_url` (finding 13): the full link the agent's own conditions carry, for every rule of the file."""
    rules = [r for g in yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"] for r in g["rules"]]
    for rule in rules:
        link = rule["annotations"].get("runbook_url", "")
        assert link == runbook_url(rule["alert"]), rule["alert"]
        assert link.startswith("https://"), link
    declared = {r.name: r.runbook for r in RULES}
    assert all(declared[r["alert"]] == r["annotations"]["runbook_url"] for r in rules if r["alert"] in declared)


@pytest.mark.parametrize("policy", [NEUTRAL, GUIDE], ids=["neutral", "guide"])
def test_a_folder_of_old_real_runs_pages_nowhere(tmp_path, policy):
    """Finding 3 end to end: a real agent watching the real-log fixtures (written months or years ago) exports each
    run with trainwarden_run_history 1, and the Prometheus rules over its exposition fire what the agent's own
    conditions hold, with no red or yellow for any run, under the neutral defaults and under the guide profile."""
    agent = Agent([REAL], "127.0.0.1", 0, policy=policy)
    try:
        agent.fleet.rediscover()
        report = agent.status_report()
    finally:
        agent.stop()
    assert len(report.runs) >= 5 and all(run.history for run in report.runs)
    exported = {s.labels["run"]: s.value for f in text_string_to_metric_families(
        generate_latest(make_registry(lambda: report, CollectorStats())).decode()) for s in f.samples
        if s.name == "trainwarden_run_history"}
    assert exported == {run.run: 1.0 for run in report.runs}
    fired = prometheus_alerts(tmp_path / "old.test.yml", {"old:9841": (report, report.timestamp)})["old:9841"]
    assert fired == agent_alerts(report)  # the same, on real runs: the info that stays (TrainingFinished...)
    assert not [(alert, run) for alert, run, severity in fired if run and severity in ("critical", "warning")]
