"""End to end with the real servers: the Debian `prometheus` and `prometheus-alertmanager` binaries on loopback with
the very files of alerts/ and deploy/ (ports and paths substituted), an agent watching a run, the bridge
delivering to a local HTTP sink. A logged loss above 1.0 must become a message, then a resolved notice; and
Prometheus must raise the same alerts as the agent's own evaluator (conformance)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from conftest import wait_for
from stack import ROOT, get_json, line, running_stack

from trainwarden.app.agent import Agent


@pytest.fixture
def stack(tmp_path):
    with running_stack(tmp_path) as handles:
        yield handles


def firing(prom: str) -> set[str]:
    alerts = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing" and a["labels"].get("run") == "exp"}


def agent_alerts(agent: Agent) -> set[str]:
    runs = agent.status_document()["runs"]
    return {c["alert"] for r in runs if r["run"] == "exp" for c in r["conditions"] if c["severity"] != "info"}


def test_loss_explosion_through_prometheus_alertmanager_and_the_bridge(stack):
    sink, log = stack["sink"], stack["log"]
    with log.open("a", encoding="utf-8") as f:
        f.write(line(100, 1.35))
    start = time.monotonic()
    wait_for(lambda: any("[RED] TrainingLossExplosion - exp on 127.0.0.1" in t for t in sink.titles()), timeout=30)
    took = time.monotonic() - start
    assert took < 15, took  # the figure (under 5 s at 1 s intervals) is printed by bench/stack_figures.py
    message = next(m for m in sink.received if "TrainingLossExplosion" in m["title"])
    assert "1.3500" in message["message"] and "docs/contracts/alerts.md#traininglossexplosion" in message["message"]
    # what a standalone page carries, asked by the bridge of the agent in the alert's `instance` (issue 12, finding 13)
    assert message["type"] == "failure"
    assert "log lines:" in message["message"] and "Epoch(train)  [2][ 100/1000]" in message["message"]
    assert "epoch_1.pth" in message["message"] and "could not be reached" not in message["message"]
    # conformance: Prometheus and the agent's evaluator raise the same (non-info) alerts
    wait_for(lambda: firing(stack["prom"]) - {"TrainingEvaluationCompleted"} == agent_alerts(stack["agent"]), timeout=10)
    # the loss comes back: Prometheus resolves, Alertmanager sends resolved at its group interval (1 min for red)
    with log.open("a", encoding="utf-8") as f:
        f.write(line(150, 0.30))
    wait_for(lambda: any("[RESOLVED] TrainingLossExplosion - exp" in t for t in sink.titles()), timeout=120, interval=1)
    assert sum("[RED] TrainingLossExplosion" in t for t in sink.titles()) == 1  # retries and repeats: once
    # the bridge's counters, and a webhook without the token is refused
    req = urllib.request.Request(f"http://127.0.0.1:{stack['bridge'].address[1]}/alerts", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 401
    with urllib.request.urlopen(f"http://127.0.0.1:{stack['bridge'].address[1]}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'trainwarden_bridge_webhooks_total{result="unauthorized"} 1.0' in text
    assert 'trainwarden_notifications_total{severity="critical"} 2.0' in text


def test_every_dashboard_loads_and_every_panel_query_returns_data(stack):
    from grafana_foundation_sdk.models.dashboard import Dashboard

    prom = stack["prom"]
    time.sleep(3)  # a few scrapes, so range queries have points
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        assert "__inputs" not in raw and raw["uid"].startswith("trainwarden-")
        dashboard = Dashboard.from_json(raw)  # the SDK (schema 41) reads it
        assert dashboard.uid == raw["uid"] and len(dashboard.panels) == len(raw["panels"])
        for p in raw["panels"]:
            assert p["datasource"]["uid"] == "trainwarden-prometheus"
            for t in p["targets"]:
                expr = t["expr"].replace('"$instance"', '".*"').replace('"$run"', '".*"')
                query = urllib.parse.urlencode({"query": expr})
                result = get_json(f"{prom}/api/v1/query?{query}")
                assert result["status"] == "success", (path.name, p["title"], expr)
                assert result["data"]["result"], f"{path.name} / {p['title']}: no data for {expr}"


def test_an_alertmanager_cluster_pages_once(tmp_path):
    """Alertmanager HA: two instances gossiping, Prometheus sending to both; the phone rings once."""
    with running_stack(tmp_path, alertmanagers=2) as stack:
        with stack["log"].open("a", encoding="utf-8") as f:
            f.write(line(100, 1.35))
        wait_for(lambda: any("[RED] TrainingLossExplosion - exp" in t for t in stack["sink"].titles()), timeout=60)
        time.sleep(20)  # the second instance's turn (peer timeout 15 s) has passed: anything twice would be here
        assert sum("[RED] TrainingLossExplosion - exp" in t for t in stack["sink"].titles()) == 1
