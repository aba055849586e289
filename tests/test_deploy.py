"""The deployment files checked by the real tools that run here (Docker and Grafana cannot): the compose file
against the compose specification, Alertmanager's config and routes by amtool, Prometheus's by promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import require_binary

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"


def test_compose_file_follows_the_compose_spec():
    tool = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(tool), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "docker-compose.yml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_ports_and_secrets():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"prometheus", "alertmanager", "grafana", "trainwarden-bridge", "trainwarden-agent", "trainwarden-demo",
            "victoriametrics"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("${TRAINWARDEN_BIND:-127.0.0.1}:"), (name, port)  # loopback unless configured
    assert "?" in services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]  # required, no default
    agent = services["trainwarden-agent"]
    assert any(v.endswith(":/work_dirs:ro") for v in agent["volumes"])
    assert agent["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["trainwarden-demo"]["profiles"] == ["demo"]
    assert "trainwarden-agent" in services["trainwarden-demo"]["networks"]["default"]["aliases"]
    for path in ("../alerts", "../grafana/provisioning", "../grafana/dashboards", "./prometheus/prometheus.yml",
                 "./alertmanager/alertmanager.yml", "./trainwarden/trainwarden.yml"):
        assert (DEPLOY / path).exists(), path


def test_alertmanager_config_and_routes():
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is not installed: tests/run-all.sh installs prometheus-alertmanager")
    config = str(DEPLOY / "alertmanager" / "alertmanager.yml")
    check = subprocess.run([amtool, "check-config", config], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    for severity, receiver in (("critical", "bridge-critical"), ("warning", "bridge-warning"), ("info", "bridge-info")):
        routed = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}", f"severity={severity}",
                                 "alertname=TrainingLossExplosion", "run=r"], capture_output=True, text=True, timeout=60)
        assert routed.stdout.strip() == receiver, (severity, routed.stdout, routed.stderr)
    am = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    inhibited = {(r["source_matchers"][0], r["target_matchers"][0]) for r in am["inhibit_rules"]}
    assert ('alertname="TrainingProcessExited"', 'alertname="TrainingStalled"') in inhibited
    assert any(source == 'alertname="TrainwardenAgentDown"' for source, _ in inhibited)
    assert am["route"]["group_by"] == ["alertname", "instance", "run"]


def test_prometheus_config_and_file_discovery(tmp_path):
    promtool = require_binary("promtool")
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    text = text.replace("/etc/prometheus/targets", str(DEPLOY / "prometheus" / "targets"))
    text = text.replace("/etc/prometheus/rules", str(ROOT / "alerts"))
    (tmp_path / "prometheus.yml").write_text(text, encoding="utf-8")
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_matches_the_dashboards():
    ds = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    uids = set()
    for path in (ROOT / "grafana" / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        uids.add(dashboard["uid"])
        assert all(p["datasource"]["uid"] == uid for p in dashboard["panels"])
        assert dashboard["templating"]["list"][0]["name"] == "instance"
    assert uids == {"trainwarden-fleet", "trainwarden-run", "trainwarden-gpu"}


def test_native_service_files():
    unit = (DEPLOY / "systemd" / "trainwarden-agent.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/trainwarden/bin/trainwarden watch" in unit and "EnvironmentFile=" in unit
    assert "trainwarden watch D:\\work_dirs" in (DEPLOY / "windows" / "README.md").read_text(encoding="utf-8")
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["trainwarden"]' in dockerfile and "USER trainwarden" in dockerfile
