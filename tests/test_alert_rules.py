"""The Prometheus rules in alerts/: valid for promtool, unit-tested by promtool (alerts/tests), and naming the
same alerts as the agent's own evaluator."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from conftest import require_binary

ROOT = Path(__file__).parent.parent
RULES = ROOT / "alerts" / "trainwarden.rules.yml"
UNIT = ROOT / "alerts" / "tests" / "trainwarden.test.yml"
# docs/contracts/alerts.md
CONTRACT = {
    "critical": {"TrainingLossExplosion", "TrainingLossNotFinite", "TrainingCUDAOutOfMemory", "TrainingProcessExited",
                 "TrainingStalled", "TrainingTargetMissed", "TrainingDegraded", "TrainwardenAgentDown"},
    "warning": {"TrainingLossRising", "TrainingLossOutOfRange", "TrainingAccuracyLow", "TrainingGradNormHigh",
                "TrainingEvaluationBelowTarget", "TrainingEvaluationFalling", "TrainingStagnant", "TrainingEarlyStopRisk",
                "TrainingEndedUnconfirmed",
                "TrainingLearningRateCollapsed", "GPUTemperatureHigh", "GPUMemoryNearlyFull",
                "TrainwardenCollectorFailing", "TrainwardenNotificationsFailing"},
    "info": {"TrainingEvaluationCompleted", "TrainingTargetReached", "TrainingFinished", "TrainingEarlyStopped"},
}


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for r in g["rules"]]


def test_promtool_checks_and_unit_tests_pass():
    promtool = require_binary("promtool")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", str(UNIT)], capture_output=True, text=True, timeout=120)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_every_contract_alert_is_a_rule_with_severity_and_annotations():
    by_name = {r["alert"]: r for r in rules()}
    for severity, names in CONTRACT.items():
        for name in names:
            rule = by_name[name]
            assert rule["labels"]["severity"] == severity, name
            assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
    assert set(by_name) == set().union(*CONTRACT.values())


def test_every_alert_is_unit_tested_firing_and_quiet():
    text = UNIT.read_text(encoding="utf-8")
    for name in set().union(*CONTRACT.values()):
        checks = re.findall(rf"alertname: {name}\n\s+exp_alerts:(.*?)(?=\n\s+- eval_time|\n\n|\Z)", text, re.S)
        assert any("exp_labels" in c for c in checks), f"{name}: no firing case"
        assert any(c.strip().startswith("[]") for c in checks), f"{name}: no quiet case"


def test_no_threshold_is_repeated_in_the_rules():
    """Thresholds come from trainwarden_policy_* series: no bare numbers compared against in an expression
    (0 and 1 are booleans; 15m and friends are windows)."""
    for rule in rules():
        expr = re.sub(r"\[[0-9]+[smh]\]", "", rule["expr"])
        numbers = set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", expr)) - {"0", "1"}
        assert not numbers, (rule["alert"], numbers)


def test_the_registry_declares_every_rule_with_its_severity():
    """Each alert is declared once (judge/rules/registry.py); the Prometheus rules raise the same names with the
    same severity (which scenarios fire them is tests/test_alert_parity.py's)."""
    from trainwarden.judge.rules.registry import RULES

    declared = {r.name: r.severity.value for r in RULES}
    ruled = {r["alert"]: r["labels"]["severity"] for r in rules()
             if r["alert"] not in ("TrainwardenAgentDown", "TrainwardenCollectorFailing", "TrainwardenNotificationsFailing")}
    assert declared == ruled


HISTORY_GUARD = "unless on(instance, job, run) trainwarden_run_history == 1"


def test_every_run_page_skips_a_history_run():
    """Finding 3: a run already quiet for longer than policy.history_after_seconds when the agent first read it is
    shown and exported, never paged: every run rule that is not info ends with the guard, applied to the whole
    expression (a top-level `or` is in parentheses before it); the info rules keep firing, as the agent keeps a
    history run's info. Which alerts fire is tests/test_alert_parity.py's and the promtool unit tests'."""
    for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]:
        if group["name"] != "trainwarden-training":
            continue
        for rule in group["rules"]:
            lines = [line.strip() for line in rule["expr"].strip().splitlines()]
            if rule["labels"]["severity"] == "info":
                assert "trainwarden_run_history" not in rule["expr"], rule["alert"]
                continue
            assert lines[-1] == HISTORY_GUARD, rule["alert"]
            body = " ".join(lines[:-1])
            depth, top_level = 0, []
            for token in re.findall(r"[()]|\bor\b", body):
                depth += {"(": 1, ")": -1}.get(token, 0)
                if token == "or" and depth == 0:
                    top_level.append(token)
            assert not top_level, f"{rule['alert']}: a top-level `or` outside the history guard"
