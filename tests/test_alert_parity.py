"""The two alert engines agree: every scenario of the evaluator's table (tests/test_evaluate.py: the user's guide
profile and the neutral defaults, each with "does not fire" cases) is judged by the
agent (the registry's conditions) and, through the agent's own /metrics exposition, by the Prometheus rules in
`promtool test rules`; the alerts that fire, with their run and severity, must be the same.

promtool is asked to expect no alert at all for every rule, so each alert that does fire is reported back with
its labels ("got: ..."): what Prometheus fires is read from promtool itself, not assumed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import require_binary
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_evaluate import CASES, scenario_report

from trainwarden.judge.rules.registry import RULES, is_host_rule, runbook_url
from trainwarden.model import StatusReport
from trainwarden.outputs.metrics import CollectorStats, make_registry

RULES_FILE = Path(__file__).parent.parent / "alerts" / "trainwarden.rules.yml"
EVAL_SECONDS = 1200  # promtool's clock at the evaluation: 20 minutes of constant series, every `for:` long held
GOT = re.compile(r"Labels:\{([^}]*)\}")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def agent_alerts(report: StatusReport) -> set[tuple[str, str, str]]:
    fired = {(c.alert, c.run or "", c.severity.value) for r in report.runs for c in r.conditions if not is_host_rule(c.alert)}
    return fired | {(c.alert, "", c.severity.value) for c in report.conditions}


def series(report: StatusReport, now: float) -> list[dict]:
    """The exposition as promtool input series: constant values, timestamps moved onto promtool's clock."""
    text = generate_latest(make_registry(lambda: report, CollectorStats())).decode()
    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            value = sample.value
            if "timestamp_seconds" in sample.name:
                value -= now - EVAL_SECONDS
            labels = {**sample.labels, "instance": "gpu-box:9841", "job": "trainwarden"}
            selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            shown = "NaN" if value != value else repr(float(value))
            out.append({"series": f"{sample.name}{{{selector}}}", "values": f"{shown}+0x30"})
    return out


def prometheus_alerts(tmp_path: Path, name: str, report: StatusReport, now: float) -> set[tuple[str, str, str]]:
    test = {"rule_files": [str(RULES_FILE)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series(report, now),
        "alert_rule_test": [{"eval_time": f"{EVAL_SECONDS}s", "alertname": r.name, "exp_alerts": []} for r in RULES],
    }]}
    path = tmp_path / f"{re.sub(r'[^a-z0-9]+', '_', name.lower())}.test.yml"
    path.write_text(yaml.safe_dump(test), encoding="utf-8")
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(path)], capture_output=True, text=True,
                            timeout=60)
    output = result.stdout + result.stderr
    fired = set()
    for block in GOT.findall(output):
        labels = dict(LABEL.findall(block))
        fired.add((labels["alertname"], labels.get("run", ""), labels.get("severity", "")))
    if result.returncode != 0 and not fired:
        raise AssertionError(f"promtool failed without a fired alert:\n{output}")
    return fired


@pytest.mark.parametrize(("name", "kwargs", "fire", "quiet", "health"), CASES, ids=[c[0] for c in CASES])
def test_agent_and_prometheus_fire_the_same_alerts(tmp_path, name, kwargs, fire, quiet, health):
    report, now = scenario_report(**kwargs)
    assert agent_alerts(report) == prometheus_alerts(tmp_path, name, report, now)


def test_every_rule_carries_the_registry_runbook_as_a_full_link():
    """`runbook_url` (finding 13): the full link the agent's own conditions carry, for every rule of the file."""
    rules = [r for g in yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"] for r in g["rules"]]
    for rule in rules:
        link = rule["annotations"].get("runbook_url", "")
        assert link == runbook_url(rule["alert"]), rule["alert"]
        assert link.startswith("https://"), link
    declared = {r.name: r.runbook for r in RULES}
    assert all(declared[r["alert"]] == r["annotations"]["runbook_url"] for r in rules if r["alert"] in declared)
