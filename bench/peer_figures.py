"""Prints trainwarden against its peer, Google's mtail (Debian package `mtail`) running bench/mtail/trainwarden.mtail
(the same core values: epoch, iteration, loss and its components, lr, grad_norm, validation metrics, checkpoints),
side by side in one run, each pair with its ratio (trainwarden / mtail: under 1 is trainwarden ahead):

a) watching 8 logs written at one line a second, both scraped every 15 s: CPU (percent of one core) and resident
   memory of `trainwarden watch` (a real subprocess) and of `mtail --progs bench/mtail --logs GLOB`;
b) latency: a line appended to a log until its value shows in each one's /metrics (median and worst);
c) cold read of a large generated log (bench/figures.py's generator): `trainwarden status --json` against
   `mtail --one_shot`, with `grep -c` as the floor.

    .venv/bin/python bench/peer_figures.py                          # about 8 minutes (mtail reads 885 MB 3 times)
    .venv/bin/python bench/peer_figures.py --seconds 60 --cold-mb 100  # quicker, noisier

mtail starts at the end of the files it finds and never reads their history; trainwarden reads the runs' history
first (before the measurement starts).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from conftest import free_port  # noqa: E402
from figures import generate  # noqa: E402
from load_figures import cpu_seconds, get, make_runs  # noqa: E402
from stack import line  # noqa: E402

PROGS = HERE / "mtail"
TRAINWARDEN = [sys.executable, "-m", "trainwarden"]
GOAL_RESIDENT_MIB = 25


class Watcher:
    """One of the two, started over the same logs: its process, and how its /metrics names a log's loss."""

    def __init__(self, name: str, cmd: list[str], base: str, loss: str, label: dict[Path, str]) -> None:
        self.name, self.base = name, base
        self.loss, self.label = loss, label  # the loss series' name, and each log's label in it
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ps = psutil.Process(self.proc.pid)

    def shows(self, log: Path, value: str) -> bool:
        """The log's loss series in /metrics has this value."""
        try:
            body = get(self.base + "/metrics").decode()
        except OSError:
            return False
        head, want = f"{self.loss}{{", float(value)
        return any(x.startswith(head) and self.label[log] in x and float(x.rsplit(" ", 1)[1]) == want
                   for x in body.splitlines())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def start_trainwarden(root: Path, logs: list[Path]) -> Watcher:
    port = free_port()
    w = Watcher("trainwarden", [*TRAINWARDEN, "watch", str(root), "--web.listen-address", f"127.0.0.1:{port}"],
                f"http://127.0.0.1:{port}", "trainwarden_train_loss", {log: f'run="{log.parent.parent.name}"' for log in logs})
    wait(lambda: _body(w.base + "/metrics").count("trainwarden_train_epoch{") == len(logs), "trainwarden read the runs")
    return w


def start_mtail(root: Path, logs: list[Path]) -> Watcher:
    port = free_port()
    w = Watcher("mtail", ["mtail", "--progs", str(PROGS), "--logs", str(root / "*" / "*" / "*.log"), "--address",
                          "127.0.0.1", "--port", str(port), "--logtostderr"], f"http://127.0.0.1:{port}", "train_loss",
                {log: f'log="{log}"' for log in logs})

    def opened() -> int:
        return len(json.loads(_body(w.base + "/debug/vars") or "{}").get("log_opens_total") or {})

    wait(lambda: opened() == len(logs), "mtail opened the logs")  # at their end: every later line counts
    return w


def _body(url: str) -> str:
    try:
        return get(url).decode()
    except OSError:
        return ""


def wait(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting until {what}")
        time.sleep(0.05)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def watching(watchers: list[Watcher], logs: list[Path], seconds: float) -> None:
    stop = threading.Event()

    def write() -> None:  # one line a second to each log, spread over the second
        it = 200
        while not stop.is_set():
            it += 1
            for log in logs:
                with log.open("a", encoding="utf-8") as f:
                    f.write(line(it % 1000 + 1, 0.3 - (it % 100) / 10000))
                if stop.wait(1 / len(logs)):
                    return

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(5)  # both following the writes
    cpu0 = [cpu_seconds(w.ps) for w in watchers]
    peak = [0] * len(watchers)
    start = next_scrape = time.monotonic()
    while time.monotonic() - start < seconds:
        if time.monotonic() >= next_scrape:
            for w in watchers:
                get(w.base + "/metrics")  # Prometheus' default scrape interval
            next_scrape += 15
        peak = [max(p, w.ps.memory_info().rss) for p, w in zip(peak, watchers, strict=True)]
        time.sleep(1)
    wall = time.monotonic() - start
    cpu = [(cpu_seconds(w.ps) - c) / wall * 100 for w, c in zip(watchers, cpu0, strict=True)]
    rss = [w.ps.memory_info().rss for w in watchers]
    peak = [max(p, r) for p, r in zip(peak, rss, strict=True)]
    rss = [r / 2**20 for r in rss]
    stop.set()
    writer.join()
    print(f"a) watching {len(logs)} logs x 1 line/s for {wall:.0f} s, /metrics scraped every 15 s:")
    print(f"   CPU, % of one core:   trainwarden {cpu[0]:.2f}   mtail {cpu[1]:.2f}   ratio {ratio(cpu[0], cpu[1])}")
    print(f"   resident MiB:         trainwarden {rss[0]:.1f} (peak {peak[0] / 2**20:.1f})   mtail {rss[1]:.1f} "
          f"(peak {peak[1] / 2**20:.1f})   ratio {ratio(rss[0], rss[1])} (goal: trainwarden at most {GOAL_RESIDENT_MIB})")


def latency(watchers: list[Watcher], logs: list[Path], appends: int) -> None:
    """Each appended line is watched for by both at once, each from its own thread polling its /metrics."""
    found: dict[str, list[float]] = {w.name: [] for w in watchers}

    def follow(w: Watcher, log: Path, loss: str, start: float) -> None:
        while not w.shows(log, loss):
            if time.perf_counter() - start > 10:
                break
            time.sleep(0.005)
        found[w.name].append(time.perf_counter() - start)

    for k in range(appends):
        log, loss = logs[k % len(logs)], f"{0.5 + (k + 1) / 10000:.4f}"
        with log.open("a", encoding="utf-8") as f:
            f.write(line(900, float(loss)))
        start = time.perf_counter()
        threads = [threading.Thread(target=follow, args=(w, log, loss, start)) for w in watchers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(0.3)
    tw, mt = (found[w.name] for w in watchers)
    print(f"b) latency, a line appended until its value is in /metrics, {appends} appends:")
    for what, fn in (("median", statistics.median), ("worst", max)):
        a, b = fn(tw) * 1000, fn(mt) * 1000
        print(f"   {what + ' ms:':<22}trainwarden {a:.0f}   mtail {b:.0f}   ratio {ratio(a, b)}")


def cold_read(out: Path, size_mb: int, repeat: int) -> None:
    work_dir = out / f"run_{size_mb}mb"  # bench/figures.py's layout: the file is shared with it
    log = work_dir / "20251111_180600" / "20251111_180600.log"
    if not log.exists() or log.stat().st_size < size_mb * 10**6:
        shutil.rmtree(work_dir, ignore_errors=True)
        print(f"generating a {size_mb} MB MMEngine log in {log} ...", flush=True)
        generate(log, size_mb * 10**6)
    commands = {
        "trainwarden status --json": [*TRAINWARDEN, "status", "--json", str(work_dir)],
        "mtail --one_shot": ["mtail", "--one_shot", "--progs", str(PROGS), "--logs", str(log), "--logtostderr"],
        "grep -c": ["grep", "-c", "loss:", str(log)],
    }
    took = {name: sorted(wall_time(cmd) for _ in range(repeat)) for name, cmd in commands.items()}
    tw, mt, gr = (statistics.median(t) for t in took.values())
    spans = {name: f"{t[0]:.2f}-{t[-1]:.2f} s" for name, t in took.items()}
    print(f"c) cold read of a {log.stat().st_size / 1e6:.0f} MB log, median of {repeat} (range):")
    print(f"   trainwarden status --json {tw:.2f} s ({spans['trainwarden status --json']})   mtail --one_shot {mt:.2f} s "
          f"({spans['mtail --one_shot']})   ratio {ratio(tw, mt)}")
    print(f"   reference: grep -c loss: {gr:.2f} s ({spans['grep -c']}); trainwarden / grep {ratio(tw, gr)}")


def wall_time(cmd: list[str]) -> float:
    """Seconds the command ran; `status` exits 3 when a run is red (the generated run stalls): still a full read.
    Output goes to a pipe, not /dev/null: GNU grep stops at the first match when it sees /dev/null."""
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if result.returncode not in (0, 3):
        raise SystemExit(f"{cmd[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120, help="how long the watching load is measured")
    parser.add_argument("--appends", type=int, default=40)
    parser.add_argument("--cold-mb", type=int, default=885)
    parser.add_argument("--repeat", type=int, default=3, help="cold reads of each command")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--no-cold", action="store_true", help="only a) and b)")
    args = parser.parse_args()
    if shutil.which("mtail") is None:
        raise SystemExit("mtail is not installed: apt-get install -y mtail")
    tmp = Path(tempfile.mkdtemp(prefix="trainwarden-peer-"))
    watchers: list[Watcher] = []
    try:
        root = tmp / "work_dirs"
        logs = make_runs(root, 8)
        watchers = [start_trainwarden(root, logs), start_mtail(root, logs)]
        watching(watchers, logs, args.seconds)
        latency(watchers, logs, args.appends)
    finally:
        for w in watchers:
            w.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.no_cold:
        cold_read(args.out, args.cold_mb, args.repeat)
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # each figure as soon as it is measured, also into a file
    sys.exit(main())
