"""Real-GPU check (not part of the test suite; CI never runs it): on a host with an NVIDIA GPU, PyTorch with CUDA
and nvidia-smi, run the agent, start a small CUDA workload that belongs to a run, and compare what the agent
exports with what `nvidia-smi` says. Prints every comparison; exits 0 when all hold.

    .venv/bin/python tests/gpu/check_nvml.py          # from the repository root, after `pip install -e .`

Tolerances (issue 3): memory used within 5 %, temperature within 3 °C, the workload's PID mapped to its GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CONFIG = "gpu_check_config.py"
RUN = "gpu_check_run"
WORKLOAD = r"""
import sys, time, torch
log = open(sys.argv[1], "a")                 # holds the run's log open, like a trainer
x = torch.empty(int(1.5 * 2**30), dtype=torch.uint8, device="cuda")   # 1.5 GiB that nvidia-smi must see
a = torch.randn(4096, 4096, device="cuda")
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    a = (a @ a).tanh()                      # keep the GPU busy
    torch.cuda.synchronize()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def samples(text: str) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def smi(query: str, kind: str = "gpu") -> list[list[str]]:
    flag = "--query-gpu" if kind == "gpu" else "--query-compute-apps"
    out = subprocess.run(["nvidia-smi", f"{flag}={query}", "--format=csv,noheader,nounits"], capture_output=True,
                         text=True, check=True).stdout
    return [[c.strip() for c in line.split(",")] for line in out.strip().splitlines() if line.strip()]


def main() -> int:
    if shutil.which("nvidia-smi") is None:
        print("nvidia-smi not found: run this on a host with an NVIDIA GPU")
        return 2
    root = Path(tempfile.mkdtemp(prefix="trainwarden-gpu-check-"))
    session = root / RUN / "20250101_000000"
    session.mkdir(parents=True)
    log = session / "20250101_000000.log"
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    log.write_text(f"{now} - mmengine - INFO - Epoch(train)  [1][  50/1000]  lr: 4.0000e-05  eta: 0:10:00  "
                   "time: 0.4567  data_time: 0.0123  memory: 5432  loss: 0.3000\n", encoding="utf-8")
    (root / RUN / CONFIG).write_text("train_cfg = dict(max_epochs=1)\n", encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    agent = subprocess.Popen([sys.executable, "-m", "trainwarden", "watch", str(root), "--web.listen-address",
                              f"127.0.0.1:{port}"])
    workload = subprocess.Popen([sys.executable, "-c", WORKLOAD, str(log), "60", f"configs/{CONFIG}"])
    results: list[tuple[str, bool, str]] = []
    try:
        time.sleep(15)  # CUDA context up, memory allocated, GPU warm, agent has found the process
        text = get(base + "/metrics")
        doc = json.loads(get(base + "/api/runs"))
        m = samples(text)
        gpus = {g["uuid"]: g for g in doc["gpus"]}
        results.append(("agent reads GPUs", bool(gpus), f"{len(gpus)} GPU(s) in /api/runs; gpu error: {doc.get('gpu_error')}"))
        for index, uuid, mem_used, temp, util, power in smi("index,uuid,memory.used,temperature.gpu,utilization.gpu,power.draw"):
            g = gpus.get(uuid)
            if g is None:
                results.append((f"GPU {index} present", False, f"{uuid} missing from the agent"))
                continue
            smi_mem = float(mem_used) * 2**20
            ours = g.get("memory_used_bytes")
            ok = ours is not None and abs(ours - smi_mem) <= 0.05 * max(smi_mem, 1)
            shown = f"{ours / 2**20:.0f} MiB" if ours is not None else "nothing"
            results.append((f"GPU {index} memory used", ok, f"agent {shown}, nvidia-smi {float(mem_used):.0f} MiB"))
            t = g.get("temperature_celsius")
            ok = t is not None and abs(t - float(temp)) <= 3
            results.append((f"GPU {index} temperature", ok, f"agent {t} °C, nvidia-smi {temp} °C"))
            results.append((f"GPU {index} utilization (shown, not compared)", True,
                            f"agent {g.get('utilization_ratio')}, nvidia-smi {util} %"))
            results.append((f"GPU {index} power (shown, not compared)", True,
                            f"agent {g.get('power_watts')} W, nvidia-smi {power} W"))
            value = m.get(("trainwarden_gpu_temperature_celsius", (("gpu", str(g["index"])), ("uuid", uuid))))
            results.append((f"GPU {index} metric exported", value is not None, f"trainwarden_gpu_temperature_celsius={value}"))
        apps = smi("pid,gpu_uuid,used_memory", kind="apps")
        mine = [a for a in apps if int(a[0]) == workload.pid]
        if not mine:
            results.append(("workload visible to nvidia-smi", False,
                            f"pid {workload.pid} not in {apps} (a container's PID namespace?)"))
        for pid, uuid, used in mine:
            g = gpus.get(uuid, {})
            mapped = m.get(("trainwarden_gpu_run_info", (("gpu", str(g.get("index"))), ("run", RUN), ("uuid", uuid))))
            results.append(("workload PID mapped to its GPU", mapped == 1,
                            f"pid {pid} on {uuid}: trainwarden_gpu_run_info{{run={RUN}}} = {mapped}"))
            run = next((r for r in doc["runs"] if r["run"] == RUN), {})
            results.append(("run's process found", (run.get("process") or {}).get("pid") == workload.pid,
                            f"process {run.get('process')}"))
            per_run = m.get(("trainwarden_run_gpu_memory_used_bytes",
                             (("gpu", str(g.get("index"))), ("run", RUN), ("uuid", uuid))))
            ok = per_run is not None and abs(per_run - float(used) * 2**20) <= 0.05 * float(used) * 2**20
            results.append(("run GPU memory", ok, f"agent {per_run}, nvidia-smi {used} MiB"))
    finally:
        workload.kill()
        agent.terminate()
        agent.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)
    width = max(len(name) for name, _, _ in results)
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<{width}}  {detail}")
    failed = [r for r in results if not r[1]]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
