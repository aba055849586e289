"""End to end with the real servers: the Debian `prometheus` and `prometheus-alertmanager` binaries on loopback with
the very files of alerts/ and deploy/ (ports and paths substituted), an agent watching a run, the bridge
delivering to a local HTTP sink. A logged loss above 1.0 must become a message, then a resolved notice; and
Prometheus must raise the same alerts as the agent's own evaluator (conformance)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, require_binary, wait_for
from sinks import HttpSink

from trainwarden.agent import Agent
from trainwarden.bridge import Bridge
from trainwarden.notify.service import Notifier
from trainwarden.notify.targets import Target

ROOT = Path(__file__).parent.parent
P = " - mmengine - INFO - "
TOKEN = "s3cret-bridge-token"


def line(it: int, loss: float) -> str:
    return (f"{time.strftime('%Y/%m/%d %H:%M:%S')}{P}Epoch(train)  [1][{it:>4}/1000]  lr: 4.0000e-05  eta: 0:10:00  "
            f"time: 0.4567  data_time: 0.0123  memory: 5432  loss: {loss:.4f}  loss_cls: 0.1200\n")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def stack(tmp_path):
    prometheus = require_binary("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if alertmanager is None:
        pytest.fail("prometheus-alertmanager is not installed: tests/run-all.sh installs it")
    # the run the agent watches
    session = tmp_path / "work_dirs" / "exp" / "20251111_180600"
    session.mkdir(parents=True)
    log = session / "20251111_180600.log"
    log.write_text(line(50, 0.30), encoding="utf-8")
    agent = Agent([tmp_path / "work_dirs"], "127.0.0.1", 0, poll_interval=0.2, rediscover_interval=0.5)
    agent.start()
    sink = HttpSink()
    bridge = Bridge(Notifier([Target(sink.url())], tmp_path / "bridge-state", host="stack"), TOKEN, "127.0.0.1", 0)
    bridge.notifier.start()
    import threading

    threading.Thread(target=bridge.server.serve_forever, daemon=True).start()
    # Alertmanager with deploy/alertmanager/alertmanager.yml: the bridge's address and the token file substituted
    am_port, prom_port = free_port(), free_port()
    token_file = tmp_path / "bridge-token"
    token_file.write_text(TOKEN, encoding="utf-8")
    am_cfg = (ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    am_cfg = am_cfg.replace("http://trainwarden-bridge:9842/alerts", f"http://127.0.0.1:{bridge.address[1]}/alerts")
    am_cfg = am_cfg.replace("/etc/alertmanager/secrets/bridge-token", str(token_file))
    (tmp_path / "alertmanager.yml").write_text(am_cfg, encoding="utf-8")
    am = subprocess.Popen([alertmanager, f"--config.file={tmp_path / 'alertmanager.yml'}",
                           f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                           "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Prometheus with deploy/prometheus/prometheus.yml: 1 s intervals, the agent as the only target, alerts/ rules
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "agent.yml").write_text(f'- targets: ["127.0.0.1:{agent.address[1]}"]\n', encoding="utf-8")
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(ROOT / "alerts" / "trainwarden.rules.yml", rules / "trainwarden.rules.yml")
    prom_cfg = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    prom_cfg = (prom_cfg.replace("scrape_interval: 15s", "scrape_interval: 1s")
                .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
                .replace("/etc/prometheus/rules", str(rules)).replace("/etc/prometheus/targets", str(targets))
                .replace("alertmanager:9093", f"127.0.0.1:{am_port}")
                .replace("trainwarden-bridge:9842", f"127.0.0.1:{bridge.address[1]}")
                .replace("refresh_interval: 1m", "refresh_interval: 1s"))
    (tmp_path / "prometheus.yml").write_text(prom_cfg, encoding="utf-8")
    prom = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'prom-data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{prom_port}"

    def up():
        try:
            result = get_json(f"{base}/api/v1/query?query=trainwarden_train_loss")["data"]["result"]
            return bool(result)
        except OSError:
            return False

    try:
        wait_for(up, timeout=60, interval=0.5)
        wait_for(lambda: ready(f"http://127.0.0.1:{am_port}/-/ready"), timeout=30, interval=0.5)
        yield {"log": log, "sink": sink, "prom": base, "agent": agent, "bridge": bridge}
    finally:
        for proc in (prom, am):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        bridge.stop()
        agent.stop()
        sink.close()


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


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
    assert "1.3500" in message["message"] and "README.md#alerts" in message["message"]
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
