"""Scale-out past one Prometheus: remote_write (the block of deploy/prometheus/prometheus.yml, uncommented) into
the Debian `victoria-metrics` binary, which then answers PromQL over the agent's metrics."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse

import pytest
from conftest import free_port, wait_for
from stack import ROOT, get_json, ready, running_stack


def test_prometheus_remote_writes_to_victoriametrics(tmp_path):
    vm = shutil.which("victoria-metrics")
    if vm is None:
        pytest.fail("victoria-metrics is not installed: tests/run-all.sh installs it")
    vm_port = free_port()
    proc = subprocess.Popen([vm, f"-storageDataPath={tmp_path / 'vm'}", f"-httpListenAddr=127.0.0.1:{vm_port}",
                             "-search.latencyOffset=0s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: ready(f"http://127.0.0.1:{vm_port}/health"), timeout=30, interval=0.3)
        text = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
        block = text[text.index("# remote_write:"):]
        enabled = "\n".join(line.replace("# ", "", 1) for line in block.splitlines() if line.startswith("# "))
        enabled = enabled.replace("http://victoriametrics:8428", f"http://127.0.0.1:{vm_port}")
        with running_stack(tmp_path / "stack", prometheus_extra=enabled) as stack:
            query = urllib.parse.urlencode({"query": 'trainwarden_train_loss{run="exp"}'})

            def arrived():
                return get_json(f"http://127.0.0.1:{vm_port}/api/v1/query?{query}")["data"]["result"]

            result = wait_for(arrived, timeout=60, interval=1)
            assert float(result[0]["value"][1]) == pytest.approx(0.30)
            assert result[0]["metric"]["instance"] == f"127.0.0.1:{stack['agent'].address[1]}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
