"""Prints the agent's cost under load (issue 7), each against a reference measured in the same run:

1. watching: 8 runs each writing one line a second, /metrics scraped every 15 s, 8 (fake) GPUs: the agent's CPU
   (percent of one core) and resident memory over `--seconds`; reference: `tail -F` following the same 8 logs
   (what a hand-run watcher costs). Goals: under 1 % of a core, under 80 MB.
2. scrape latency at scale: 50 runs (two epochs of history and evaluations each) and 8 GPUs, in OpenMetrics (what
   Prometheus asks for) and the plain text format in turn, (a) with nothing changed between scrapes (the encoded
   body is reused: a lookup) and (b) with every run written to between scrapes (each builds its document and
   encodes it afresh, as Prometheus' 15 s scrapes of busy runs do); each with the agent's own encoder and with
   prometheus_client's, in the same run; reference: /healthz on the same server (the HTTP floor).
   Goals: (a) well under 5 ms, (b) under 50 ms.

    .venv/bin/python bench/load_figures.py                 # about 4.5 minutes
    .venv/bin/python bench/load_figures.py --scrapes-only  # only the scrape figures, about 1.5 minutes
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from conftest import free_port  # noqa: E402
from stack import first_lines, line  # noqa: E402


def make_runs(root: Path, n: int, epochs_of_history: int = 0) -> list[Path]:
    logs = []
    for k in range(n):
        session = root / f"run{k:02d}" / "20251111_180600"
        session.mkdir(parents=True)
        log = session / "20251111_180600.log"
        text = first_lines()
        for epoch in range(2, 2 + epochs_of_history):
            text += "".join(line(it, 0.3 - 0.01 * epoch, epoch=epoch) for it in range(50, 1001, 50))
            text += (f"{time.strftime('%Y/%m/%d %H:%M:%S')} - mmengine - INFO - Epoch(val) [{epoch}][2252/2252]    "
                     f"pascal_voc/mAP: {0.59 + 0.005 * epoch:.4f}  pascal_voc/AP50: 0.7000  data_time: 0.0020  time: 0.0921\n")
        log.write_text(text, encoding="utf-8")
        (session.parent / "epoch_1.pth").write_bytes(b"x")
        logs.append(log)
    return logs


def start_agent(root: Path, gpus: int, encoder: str = "fast") -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "fake_gpu_agent.py"), str(root), str(port), str(gpus), encoder])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):
                return proc, base
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the agent did not come up")


OPENMETRICS = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
               "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # the Accept header of Prometheus 2.x scrapes


def get(url: str, accept: str | None = None) -> bytes:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system + getattr(t, "children_user", 0) + getattr(t, "children_system", 0)


def watching(seconds: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="trainwarden-load-"))
    try:
        logs = make_runs(tmp / "work_dirs", 8)
        agent, base = start_agent(tmp / "work_dirs", gpus=8)
        tail = subprocess.Popen(["tail", "-q", "-F", *map(str, logs)], stdout=subprocess.DEVNULL)
        stop = threading.Event()

        def write() -> None:  # one line a second to each run, spread over the second
            it = 200
            while not stop.is_set():
                it += 1
                for log in logs:
                    with log.open("a", encoding="utf-8") as f:
                        f.write(line(it % 1000 + 1, 0.3))
                    if stop.wait(1 / len(logs)):
                        return

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(5)  # cold scans done, caches warm
        pa, pt = psutil.Process(agent.pid), psutil.Process(tail.pid)
        a0, t0, w0 = cpu_seconds(pa), cpu_seconds(pt), time.monotonic()
        peak = 0
        next_scrape = w0
        while time.monotonic() - w0 < seconds:
            if time.monotonic() >= next_scrape:
                get(base + "/metrics")  # Prometheus' default scrape interval
                next_scrape += 15
            peak = max(peak, pa.memory_info().rss)
            time.sleep(1)
        wall = time.monotonic() - w0
        agent_cpu = (cpu_seconds(pa) - a0) / wall * 100
        tail_cpu = (cpu_seconds(pt) - t0) / wall * 100
        stop.set()
        writer.join()
        rss = pa.memory_info().rss
        agent.terminate()
        tail.terminate()
        agent.wait(timeout=30)
        tail.wait(timeout=30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"watching 8 runs x 1 line/s, scraped every 15 s, 8 GPUs, {wall:.0f} s: agent {agent_cpu:.2f} % of one core "
          f"(goal < 1 %), `tail -F` of the same logs {tail_cpu:.2f} % (ratio {agent_cpu / max(tail_cpu, 0.01):.1f}x); "
          f"resident memory {rss / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB (goal < 80 MB)")


def _iterations(body: bytes) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "trainwarden_train_iteration":
            out.update({s.labels["run"]: s.value for s in family.samples})
    return out


def _figure(times: list[float]) -> str:
    times = sorted(times)
    med, p99 = statistics.median(times), times[int(0.99 * (len(times) - 1))]
    return f"{med * 1000:.2f} ms median, {p99 * 1000:.2f} ms p99, {times[-1] * 1000:.2f} ms worst of {len(times)}"


ENCODERS = ("fast", "library")


def scrape_latency(unchanged_scrapes: int, changing_scrapes: int) -> None:
    """Two agents on the same 50 runs, one per encoder, scraped in turn (so both meet the same machine load), in
    OpenMetrics and the text format in turn."""
    tmp = Path(tempfile.mkdtemp(prefix="trainwarden-scale-"))
    agents: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        logs = make_runs(tmp / "work_dirs", 50, epochs_of_history=2)
        agents = {encoder: start_agent(tmp / "work_dirs", gpus=8, encoder=encoder) for encoder in ENCODERS}
        for _, base in agents.values():
            while len(_iterations(get(base + "/metrics"))) < 50:
                time.sleep(0.2)  # every run found and read
        body = get(agents["fast"][1] + "/metrics")
        series = sum(1 for x in body.decode().splitlines() if x and not x.startswith("#"))
        unchanged: dict[str, list[float]] = {e: [] for e in ENCODERS}
        changing: dict[str, list[float]] = {e: [] for e in ENCODERS}
        complete = dict.fromkeys(ENCODERS, 0)
        # nothing changed between scrapes (a dashboard, the other Prometheus of an HA pair, the page's refresh); the
        # agent judges again once per 5 s bucket, so a scrape or two per bucket builds afresh
        for k in range(unchanged_scrapes):
            for encoder, (_, base) in agents.items():
                start = time.perf_counter()
                get(base + "/metrics", OPENMETRICS if k % 2 else None)
                unchanged[encoder].append(time.perf_counter() - start)
            time.sleep(0.005)
        # every run written to between scrapes (Prometheus' 15 s scrapes of runs that log every few seconds)
        before = {e: _iterations(get(base + "/metrics")) for e, (_, base) in agents.items()}
        for k in range(changing_scrapes):
            for log in logs:
                with log.open("a", encoding="utf-8") as f:
                    f.write(line(k % 1000 + 1, 0.3, epoch=4))
            time.sleep(1.0)  # pacing: the agents have read the lines (file events) by the scrapes; checked below
            for encoder, (_, base) in agents.items():
                start = time.perf_counter()
                got = get(base + "/metrics", OPENMETRICS if k % 2 else None)
                changing[encoder].append(time.perf_counter() - start)
                after = _iterations(got if k % 2 == 0 else get(base + "/metrics"))
                complete[encoder] += all(after[r] != before[encoder][r] for r in before[encoder])
                before[encoder] = after
        floor = []
        for _ in range(50):
            start = time.perf_counter()
            get(agents["fast"][1] + "/healthz")
            floor.append(time.perf_counter() - start)
    finally:
        for proc, _ in agents.values():
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"/metrics, 50 runs x 8 GPUs ({series} series), OpenMetrics and text in turn, two agents scraped in turn; "
          f"/healthz {statistics.median(floor) * 1000:.2f} ms median")
    for encoder in ENCODERS:
        print(f"  {encoder:7s} encoder, nothing changed between scrapes: {_figure(unchanged[encoder])} (goal: well under 5 ms)")
        print(f"  {encoder:7s} encoder, every run changed between scrapes: {_figure(changing[encoder])} (goal < 50 ms; "
              f"{complete[encoder]} of {changing_scrapes} scrapes held every run's new line)")


def in_process(scrapes: int) -> None:
    """The agent's own time for a scrape, without HTTP: `Agent.metrics.body` on a fleet read by hand (no threads),
    right after every run changed and then again with nothing changed, each encoder on its own change."""
    import fake_pynvml
    from prometheus_client.exposition import choose_encoder

    from trainwarden.app.agent import Agent
    from trainwarden.ingest.host.nvml import Nvml
    from trainwarden.ingest.host.sources import HostSources
    from trainwarden.outputs import exposition

    tmp = Path(tempfile.mkdtemp(prefix="trainwarden-inproc-"))
    times: dict[tuple[str, str], list[float]] = {}
    try:
        logs = make_runs(tmp, 50, epochs_of_history=2)
        module = fake_pynvml.make(fake_pynvml.gpus(8))
        agent = Agent([tmp], "127.0.0.1", 0, host_sources=HostSources(nvml=Nvml(loader=lambda: module)))
        agent.fleet.rediscover()
        it = 0
        for k in range(scrapes):
            for encoder, choose in (("fast", exposition.choose), ("library", choose_encoder)):
                agent.metrics.choose = choose
                it += 1
                for log in logs:
                    with log.open("a", encoding="utf-8") as f:
                        f.write(line(it % 1000 + 1, 0.3, epoch=4))
                agent.fleet.poll()
                for case in ("every run changed", "nothing changed"):
                    start = time.perf_counter()
                    agent.metrics.body(OPENMETRICS if k % 2 else "")
                    times.setdefault((encoder, case), []).append(time.perf_counter() - start)
        agent.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("the agent's own time per scrape (no HTTP), 50 runs x 8 GPUs, OpenMetrics and text in turn:")
    for (encoder, case), values in times.items():
        print(f"  {encoder:7s} encoder, {case}: {_figure(values)}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120, help="how long the watching load is measured")
    parser.add_argument("--unchanged-scrapes", type=int, default=500)
    parser.add_argument("--changing-scrapes", type=int, default=60)
    parser.add_argument("--scrapes-only", action="store_true", help="skip the watching load")
    args = parser.parse_args()
    if not args.scrapes_only:
        watching(args.seconds)
    in_process(args.changing_scrapes)
    scrape_latency(args.unchanged_scrapes, args.changing_scrapes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
