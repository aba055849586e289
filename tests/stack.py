"""The monitoring stack for tests and benchmarks: a real agent, the bridge, and the Debian Prometheus and
Alertmanager binaries with the very files of alerts/ and deploy/ (ports and paths substituted)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import fake_pynvml
from conftest import free_port, wait_for
from sinks import HttpSink

from trainwarden.app.agent import Agent
from trainwarden.app.bridge import Bridge
from trainwarden.app.profiles import guide_policy
from trainwarden.ingest.host.nvml import Nvml
from trainwarden.ingest.host.sources import HostSources
from trainwarden.outputs.notify.service import Notifier
from trainwarden.outputs.notify.targets import Target

ROOT = Path(__file__).parent.parent
P = " - mmengine - INFO - "
TOKEN = "s3cret-bridge-token"


def line(it: int, loss: float, epoch: int = 2) -> str:
    return (f"{time.strftime('%Y/%m/%d %H:%M:%S')}{P}Epoch(train)  [{epoch}][{it:>4}/1000]  base_lr: 4.0000e-05 "
            f"lr: 4.0000e-05  eta: 0:10:00  time: 0.4567  data_time: 0.0123  memory: 5432  grad_norm: 6.5000  "
            f"loss: {loss:.4f}  loss_cls: 0.1200  acc: 96.0000  loss_bbox: 0.1700\n")


def first_lines() -> str:
    """A run in its second epoch: config, epoch 1 with its validation (below target), the guide's early-stop line."""
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    text = (f"{now}{P}Config:\ntrain_cfg = dict(type='EpochBasedTrainLoop', max_epochs=5, val_interval=1)\n"
            "train_dataloader = dict(batch_size=4)\nval_evaluator = dict(type='VOCMetric', metric='mAP')\n")
    text += "".join(line(it, 0.30, epoch=1) for it in (50, 100, 1000))
    text += f"{now}{P}Saving checkpoint at 1 epochs\n"
    text += (f"{now}{P}Epoch(val) [1][2252/2252]    pascal_voc/mAP: 0.5900  pascal_voc/AP50: 0.5900  "
             "data_time: 0.0020  time: 0.0921\n")
    text += f"{now}{P}Epoch 1: mAP=0.5900 (<0.60, 1/2)\n"
    return text + "".join(line(it, 0.30) for it in (50, 100))


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_stack(tmp_path: Path, prometheus_extra: str = "", alertmanagers: int = 1):
    """Agent, bridge, Alertmanager and Prometheus, started for real on loopback; yields their handles."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise RuntimeError("prometheus is not installed: tests/run-all.sh installs it")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if alertmanager is None:
        raise RuntimeError("prometheus-alertmanager is not installed: tests/run-all.sh installs it")
    # the run the agent watches
    tmp_path.mkdir(parents=True, exist_ok=True)
    session = tmp_path / "work_dirs" / "exp" / "20251111_180600"
    session.mkdir(parents=True)
    log = session / "20251111_180600.log"
    log.write_text(first_lines(), encoding="utf-8")
    (session.parent / "epoch_1.pth").write_bytes(b"checkpoint")
    # a process of the run on a (fake) GPU, so the GPU panels and the run-to-GPU mapping have data
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    module = fake_pynvml.make(fake_pynvml.gpus(2))
    module.gpus[0].processes = [(trainer.pid, 3 * 2**30)]
    module.gpus[0].reasons = 0x4  # power capped
    host = HostSources(pids={"exp": trainer.pid}, nvml=Nvml(loader=lambda: module))
    agent = Agent([tmp_path / "work_dirs"], "127.0.0.1", 0, guide_policy(), poll_interval=0.2, rediscover_interval=0.5,
                  host_sources=host)
    agent.start()
    sink = HttpSink()
    bridge = Bridge(Notifier([Target(sink.url())], tmp_path / "bridge-state", host="stack"), TOKEN, "127.0.0.1", 0)
    bridge.notifier.start()
    threading.Thread(target=bridge.server.serve_forever, daemon=True).start()
    # Alertmanager with deploy/alertmanager/alertmanager.yml: the bridge's address and the token file substituted
    am_ports = [free_port() for _ in range(alertmanagers)]
    cluster_ports = [free_port() for _ in range(alertmanagers)]
    prom_port = free_port()
    token_file = tmp_path / "bridge-token"
    token_file.write_text(TOKEN, encoding="utf-8")
    am_cfg = (ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    am_cfg = am_cfg.replace("http://trainwarden-bridge:9842/alerts", f"http://127.0.0.1:{bridge.address[1]}/alerts")
    am_cfg = am_cfg.replace("/etc/alertmanager/secrets/bridge-token", str(token_file))
    (tmp_path / "alertmanager.yml").write_text(am_cfg, encoding="utf-8")
    ams = []
    for i, port in enumerate(am_ports):  # one, or an HA cluster gossiping on loopback
        cluster = ["--cluster.listen-address="] if alertmanagers == 1 else [
            f"--cluster.listen-address=127.0.0.1:{cluster_ports[i]}",
            *(f"--cluster.peer=127.0.0.1:{p}" for j, p in enumerate(cluster_ports) if j != i)]
        ams.append(subprocess.Popen([alertmanager, f"--config.file={tmp_path / 'alertmanager.yml'}",
                                     f"--storage.path={tmp_path / f'am-data-{i}'}", f"--web.listen-address=127.0.0.1:{port}",
                                     *cluster], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
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
                .replace('"alertmanager:9093"', ", ".join(f'"127.0.0.1:{p}"' for p in am_ports))
                .replace("trainwarden-bridge:9842", f"127.0.0.1:{bridge.address[1]}")
                .replace("refresh_interval: 1m", "refresh_interval: 1s"))
    (tmp_path / "prometheus.yml").write_text(prom_cfg + "\n" + prometheus_extra + "\n", encoding="utf-8")
    prom_args = [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"]
    procs = {"prom": subprocess.Popen(prom_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)}
    base = f"http://127.0.0.1:{prom_port}"

    def restart_prometheus() -> None:
        """Stop Prometheus (SIGTERM, as a container restart does) and start it again on the same data."""
        procs["prom"].terminate()
        procs["prom"].wait(timeout=30)
        procs["prom"] = subprocess.Popen(prom_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(up, timeout=60, interval=0.5)

    def up():
        try:
            result = get_json(f"{base}/api/v1/query?query=trainwarden_train_loss")["data"]["result"]
            return bool(result)
        except OSError:
            return False

    try:
        wait_for(up, timeout=60, interval=0.5)
        for port in am_ports:
            wait_for(lambda port=port: ready(f"http://127.0.0.1:{port}/-/ready"), timeout=30, interval=0.5)
        yield {"log": log, "sink": sink, "prom": base, "agent": agent, "bridge": bridge,
               "restart_prometheus": restart_prometheus}
    finally:
        for proc in (procs["prom"], *ams):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        bridge.stop()
        agent.stop()
        sink.close()
        trainer.kill()
        trainer.wait()


