"""The agent for real: its HTTP server on a loopback port, file events and polling, /metrics checked by the
Debian `promtool`, and runs that appear, grow, resume and misbehave while it watches."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import DESIGN, REAL, require_binary, wait_for
from prometheus_client.parser import text_string_to_metric_families

from trainwarden.app.agent import Agent
from trainwarden.app.profiles import guide_policy

P = " - mmengine - INFO - "


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode("utf-8")


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def agent_on(tmp_path):
    started = []

    def _start(root: Path, **kwargs) -> tuple[Agent, str]:
        agent = Agent([root], "127.0.0.1", 0, poll_interval=kwargs.pop("poll_interval", 0.2),
                      rediscover_interval=kwargs.pop("rediscover_interval", 0.5), **kwargs)
        agent.start()
        started.append(agent)
        assert agent.ready.wait(30)
        return agent, f"http://127.0.0.1:{agent.address[1]}"

    yield _start
    for agent in started:
        agent.stop()


def test_metrics_pass_promtool_and_carry_the_runs(tmp_path, agent_on):
    promtool = require_binary("promtool")
    root = tmp_path / "runs"
    shutil.copytree(REAL, root)
    shutil.copytree(DESIGN / "mmengine_kaist_resumed", root / "mmengine_kaist_resumed")
    # its early stop triggered: a backup copy of the best checkpoint would be a sixth file, whenever it lands
    # the KAIST run is the user's: judged by the guide profile, as its config would say; judged as if watched while
    # they ran: these logs are years old, which alone would make them history (never red)
    _, base = agent_on(root, policy=replace(guide_policy(), early_stop_backup=False, history_after_seconds=1e12))
    status, ctype, text = get(base + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    r = "mmengine_epoch_rtmdet_coco_v0.7.3"
    assert value(text, "trainwarden_train_epoch", run=r) == 200
    assert value(text, "trainwarden_train_max_epochs", run=r) == 200
    assert value(text, "trainwarden_run_state", run=r, state="finished") == 1
    assert value(text, "trainwarden_run_state", run=r, state="running") == 0
    assert value(text, "trainwarden_eval_metric", run=r, mode="val", key="coco/bbox_mAP") == pytest.approx(0.007)
    assert value(text, "trainwarden_eval_best", run=r, key="coco/bbox_mAP") == pytest.approx(0.009)
    assert value(text, "trainwarden_train_cuda_max_allocated_bytes", run=r) == 7957 * 1048576
    k = "mmengine_kaist_resumed"
    assert value(text, "trainwarden_train_iteration", run=k) == 34317
    assert value(text, "trainwarden_train_loss_component", run=k, component="loss_cls") == pytest.approx(0.1)
    assert value(text, "trainwarden_train_accuracy_ratio", run=k) == pytest.approx(0.96875)
    assert value(text, "trainwarden_log_errors_total", run=k, kind="nonfinite_loss") == 2
    assert value(text, "trainwarden_log_errors_total", run=k, kind="cuda_oom") == 0
    assert value(text, "trainwarden_early_stopping_evaluations_without_improvement", run=k) == 2
    assert value(text, "trainwarden_checkpoint_files", run=k) == 5
    assert value(text, "trainwarden_checkpoint_last_epoch", run=k) == 3
    assert value(text, "trainwarden_run_state", run=k, state="early_stopped") == 1
    assert value(text, "trainwarden_run_health", run=k) == 2
    assert value(text, "trainwarden_run_verdict", run=k, verdict="failed") == 1  # ended: degraded is for a live run
    assert value(text, "trainwarden_run_verdict", run=k, verdict="success") == 0
    assert value(text, "trainwarden_condition_active", run=k, alert="TrainingTargetMissed", severity="critical") == 1
    assert value(text, "trainwarden_eval_target", run=k, key="pascal_voc/mAP") == pytest.approx(0.62)
    assert value(text, "trainwarden_policy_target", run=k, key="pascal_voc/mAP") == pytest.approx(0.63)
    assert value(text, "trainwarden_policy_loss_max", run=k) == 1.0
    assert value(text, "trainwarden_policy_gpu_temperature_max_celsius") == 80
    assert value(text, "trainwarden_run_health", run=r) == 0
    assert value(text, "trainwarden_collector_success", collector="logs") == 1
    assert value(text, "trainwarden_build_info", version=__import__("trainwarden").__version__) == 1
    assert ("trainwarden_train_loss", (("run", "mmengine_test_rtmdet_coco_v0.7.3"),)) not in samples(text)  # unknown: omitted
    assert "instance" not in text and "pid=" not in text
    # OpenMetrics when Prometheus asks for it
    req = urllib.request.Request(base + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert resp.read().decode().rstrip().endswith("# EOF")


def test_api_landing_page_tail_and_health(tmp_path, agent_on):
    root = tmp_path / "runs"
    shutil.copytree(REAL / "mmdet2x_retinanet_voc", root / "<i>odd & name")
    _, base = agent_on(root)
    status, ctype, body = get(base + "/api/runs")
    doc = json.loads(body)
    assert status == 200 and ctype == "application/json"
    assert [r["run"] for r in doc["runs"]] == ["<i>odd & name"] and doc["gpus"] == []
    status, _, page = get(base + "/")
    assert status == 200 and "&lt;i&gt;odd &amp; name" in page and "<i>odd" not in page
    status, _, body = get(base + "/api/runs/%3Ci%3Eodd%20%26%20name/log?lines=2")
    tail = json.loads(body)
    assert status == 200 and tail["lines"][-1].endswith("Saving checkpoint at 4 epochs") and len(tail["lines"]) == 2
    assert get(base + "/api/runs/nope/log")[0] == 404
    assert get(base + "/api/runs/x/log?lines=abc")[0] == 400
    assert get(base + "/healthz")[:3:2] == (200, "ok\n")
    assert get(base + "/nothing")[0] == 404


def line(ts: str, text: str) -> bytes:
    return f"{ts}{P}{text}\n".encode()


def train_line(epoch: int, it: int, loss: str) -> str:
    return (f"Epoch(train)  [{epoch}][{it:>4}/1000]  lr: 4.0000e-05  eta: 0:10:00  time: 0.4567  data_time: 0.0123  "
            f"memory: 5432  loss: {loss}  loss_cls: 0.1000")


@pytest.mark.parametrize("file_events", [True, False], ids=["events", "polling"])
def test_runs_appear_grow_and_resume_while_watched(tmp_path, agent_on, file_events):
    root = tmp_path / "work_dirs"
    root.mkdir()
    agent, base = agent_on(root, use_watchdog=file_events)
    assert json.loads(get(base + "/api/runs")[2])["runs"] == []
    session = root / "exp" / "20251111_180600"
    session.mkdir(parents=True)
    log = session / "20251111_180600.log"
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    log.write_bytes(line(now, "Config:") + b"train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2)\n"
                    + line(now, train_line(1, 50, "0.3000")))
    wait_for(lambda: value(get(base + "/metrics")[2], "trainwarden_train_loss", run="exp") == 0.3, timeout=10)
    # a half-written line is not read until its end arrives
    with log.open("ab") as f:
        f.write(line(now, train_line(1, 100, "0.2900"))[:-30])
    assert agent.refresh(10)  # the agent has read the file since the half line was written
    assert value(get(base + "/metrics")[2], "trainwarden_train_iteration", run="exp") == 50
    with log.open("ab") as f:
        f.write(line(now, train_line(1, 100, "0.2900"))[-30:])
    wait_for(lambda: value(get(base + "/metrics")[2], "trainwarden_train_iteration", run="exp") == 100, timeout=10)
    # a resume writes a new session folder
    s2 = root / "exp" / "20251112_090000"
    s2.mkdir()
    (s2 / "20251112_090000.log").write_bytes(line(now, "resumed epoch: 1, iter: 1000") + line(now, train_line(2, 50, "0.2500")))
    wait_for(lambda: value(get(base + "/metrics")[2], "trainwarden_train_iteration", run="exp") == 1050, timeout=10)
    doc = json.loads(get(base + "/api/runs")[2])
    assert doc["runs"][0]["sessions"] == ["20251111_180600", "20251112_090000"]
    # checkpoints appear
    (root / "exp" / "epoch_1.pth").write_bytes(b"x")
    wait_for(lambda: value(get(base + "/metrics")[2], "trainwarden_checkpoint_files", run="exp") == 1, timeout=10)
    # a second run appears beside the first
    other = root / "other" / "20251113_000000"
    other.mkdir(parents=True)
    (other / "20251113_000000.log").write_bytes(line(now, train_line(1, 50, "0.5000")))
    wait_for(lambda: value(get(base + "/metrics")[2], "trainwarden_train_loss", run="other") == 0.5, timeout=10)


def test_bad_input_never_stops_the_agent(tmp_path, agent_on):
    root = tmp_path / "work_dirs"
    session = root / "exp" / "20251111_180600"
    session.mkdir(parents=True)
    log = session / "20251111_180600.log"
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    log.write_bytes(b"\x00\xff\xfe garbage \x80\n" * 10 + "训练开始\r\n".encode("gbk") + b"y" * (3 << 20) + b"\n"
                    + line(now, train_line(1, 50, "nan")))
    _, base = agent_on(root)
    text = get(base + "/metrics")[2]
    assert value(text, "trainwarden_log_parse_errors_total", run="exp") == 1  # the 3 MB line
    assert value(text, "trainwarden_log_errors_total", run="exp", kind="nonfinite_loss") == 1
    loss = value(text, "trainwarden_train_loss", run="exp")
    assert loss != loss  # NaN: the log says nan
    log.write_bytes(line(now, train_line(1, 50, "0.4000")))  # truncated and rewritten
    wait_for(lambda: value(get(base + "/metrics")[2], "trainwarden_train_loss", run="exp") == 0.4, timeout=10)
    shutil.rmtree(root / "exp")  # the run disappears
    wait_for(lambda: json.loads(get(base + "/api/runs")[2])["runs"] == [], timeout=10)
    assert get(base + "/healthz")[0] == 200
    assert value(get(base + "/metrics")[2], "trainwarden_collector_success", collector="logs") == 1


@pytest.mark.parametrize("enabled", [True, False])
def test_best_checkpoint_backed_up_on_early_stop(tmp_path, agent_on, enabled):
    from trainwarden.judge.policy import Policy
    root = tmp_path / "runs"
    shutil.copytree(DESIGN / "mmengine_kaist_resumed", root / "mmengine_kaist_resumed")
    wd = root / "mmengine_kaist_resumed"
    agent, _ = agent_on(root, policy=Policy(early_stop_backup=enabled))
    backup = wd / "mmengine_kaist_resumed_backup_ep1.pth"
    # the run was judged with its early stop triggered, and every copy that judgement asked for is over
    assert agent.refresh(10) and agent.backup.wait_idle(30)
    if enabled:
        assert backup.read_bytes() == (wd / "best_pascal_voc_mAP_epoch_1.pth").read_bytes()
        assert value(get(f"http://127.0.0.1:{agent.address[1]}/metrics")[2], "trainwarden_collector_success",
                     collector="backup") == 1
    else:
        assert not backup.exists()


def test_a_log_written_in_another_time_zone_is_read_in_ours(tmp_path):
    """This agent in a UTC container, the trainer on UTC+8: its lines seem 8 hours ahead; read in our time, the
    live run must look live, not 8 hours in the future."""
    import json as _json

    from conftest import run_cli

    session = tmp_path / "exp" / "20251111_180600"
    session.mkdir(parents=True)
    ahead = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(time.time() + 8 * 3600))
    (session / "20251111_180600.log").write_text(f"{ahead}{P}{train_line(1, 50, '0.3000')}\n", encoding="utf-8")
    run = _json.loads(run_cli("status", "--json", str(tmp_path)).stdout)["runs"][0]
    assert run["state"] == "running"
    assert abs(run["last_progress_timestamp_seconds"] - time.time()) < 120


def test_an_idle_agent_stays_idle(tmp_path):
    """Reading a file makes inotify report it opened and closed: the agent must not react to its own reads
    (that loop once cost a whole core)."""
    import subprocess
    import sys

    import psutil
    from conftest import free_port

    root = tmp_path / "runs"
    shutil.copytree(REAL, root)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "trainwarden", "watch", str(root), "--web.listen-address",
                             f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _up(port), timeout=30)
        time.sleep(3)  # past the start-up scan
        p = psutil.Process(proc.pid)
        before = sum(p.cpu_times()[:2])
        time.sleep(5)
        used = sum(p.cpu_times()[:2]) - before
        assert used < 1.0, f"{used:.2f} s of CPU in 5 s while nothing changed"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _up(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("backend", ["inotify", "watchdog"])
def test_a_change_without_a_file_event_brings_fast_polling_back(tmp_path, agent_on, backend):
    """Reading on events (as with a notifier): while file events work, the poll is a 2 s safety net; a change it
    finds that no event announced (a network mount that sends none) puts it back to the 0.5 s poll for good."""
    root = tmp_path / "runs"
    log = root / "exp" / "20251111_180600" / "20251111_180600.log"
    log.parent.mkdir(parents=True)

    def line(it: int) -> str:
        return (f"2025/11/11 18:06:00{P}Epoch(train)  [1][{it:>4}/1000]  lr: 4.0000e-05  eta: 0:10:00  "
                f"time: 0.4567  data_time: 0.0123  memory: 5432  loss: 0.3000\n")

    log.write_text(line(50), encoding="utf-8")
    agent, base = agent_on(root, poll_interval=0.5, rediscover_interval=None, read_on_demand=False,
                           file_events_backend=backend)
    assert agent.file_events.source == backend and not agent.reads_on_demand
    assert agent.file_events.trusted and agent.poll_seconds == 2.0 and agent.rediscover_seconds == 30.0
    agent.file_events.stop()  # from now on no event arrives, as on a network mount
    for it in (100, 150):  # found by the safety poll, twice
        with log.open("a", encoding="utf-8") as f:
            f.write(line(it))
        wait_for(lambda it=it: value(get(base + "/metrics")[2], "trainwarden_train_iteration", run="exp") == it,
                 timeout=5)
    assert not agent.file_events.trusted and agent.poll_seconds == 0.5
    with log.open("a", encoding="utf-8") as f:
        f.write(line(200))
    start = time.monotonic()
    wait_for(lambda: value(get(base + "/metrics")[2], "trainwarden_train_iteration", run="exp") == 200, timeout=5)
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize("backend", ["inotify", "watchdog"])
def test_file_events_alone_deliver_every_change(tmp_path, agent_on, backend):
    """Reading on events: the safety poll and the walk of the roots an hour apart, no request reads anything: only
    file events can bring these changes in (a handler that enqueued nothing would fail here; with the usual 2 s
    safety poll it would not)."""
    root = tmp_path / "work_dirs"
    log = root / "exp" / "20251111_180600" / "20251111_180600.log"
    log.parent.mkdir(parents=True)
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    log.write_bytes(line(now, train_line(1, 50, "0.3000")))
    agent, base = agent_on(root, poll_interval=3600, rediscover_interval=3600, read_on_demand=False,
                           file_events_backend=backend)
    assert agent.file_events.source == backend and agent.file_events.trusted
    assert agent.poll_seconds == 3600 and agent.rediscover_seconds == 3600

    def metric(name: str, **labels) -> float | None:
        body = get(base + "/metrics")[2]
        assert agent.reader.catch_ups == 0  # reading on events: a scrape reads nothing itself
        return value(body, name, **labels)

    assert metric("trainwarden_train_iteration", run="exp") == 50
    with log.open("ab") as f:
        f.write(line(now, train_line(1, 100, "0.2900")))
    wait_for(lambda: metric("trainwarden_train_iteration", run="exp") == 100, timeout=10)
    (root / "exp" / "epoch_1.pth").write_bytes(b"x")
    wait_for(lambda: metric("trainwarden_checkpoint_files", run="exp") == 1, timeout=10)
    other = root / "other" / "20251113_000000"
    other.mkdir(parents=True)
    (other / "20251113_000000.log").write_bytes(line(now, train_line(1, 50, "0.5000")))
    wait_for(lambda: metric("trainwarden_train_loss", run="other") == 0.5, timeout=10)
    assert agent.stats.file_events_dropped == 0


def test_a_full_event_queue_is_counted_and_asks_for_a_walk():
    import queue
    import threading

    from watchdog.events import FileClosedNoWriteEvent, FileModifiedEvent, FileMovedEvent

    from trainwarden.app.file_events import EnqueueHandler
    from trainwarden.outputs.metrics import CollectorStats

    stats, overflow = CollectorStats(), threading.Event()
    handler = EnqueueHandler(queue.Queue(maxsize=2), stats, overflow)
    handler.dispatch(FileClosedNoWriteEvent("/r/a.log"))  # our own reads: not news
    handler.dispatch(FileModifiedEvent("/r/a.log"))
    assert stats.file_events_dropped == 0 and not overflow.is_set()
    handler.dispatch(FileMovedEvent("/r/b.log", "/r/c.log"))  # room for one of its two paths
    assert handler.events.get_nowait() == "/r/a.log" and handler.events.get_nowait() == "/r/b.log"
    assert stats.file_events_dropped == 1 and overflow.is_set()


@pytest.mark.parametrize("broken", [True, False], ids=["broken", "working"])
def test_an_evaluation_that_fails_is_shown_not_taken_for_silence(tmp_path, agent_on, sink, broken):
    from trainwarden.outputs.notify.service import Notifier
    from trainwarden.outputs.notify.targets import Target

    class BrokenNotifier(Notifier):
        def handle(self, doc, tail):
            raise RuntimeError("a bug in a rule")

    root = tmp_path / "work_dirs"
    log = root / "exp" / "20251111_180600" / "20251111_180600.log"
    log.parent.mkdir(parents=True)
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    log.write_bytes(line(now, train_line(1, 50, "0.3000")))
    notifier = (BrokenNotifier if broken else Notifier)([Target(sink.url())], tmp_path / "state", host="h")
    _, base = agent_on(root, notifier=notifier)
    assert value(get(base + "/metrics")[2], "trainwarden_collector_success", collector="evaluate") == (0 if broken else 1)
    with log.open("ab") as f:  # the reading goes on
        f.write(line(now, train_line(1, 100, "0.2900")))
    wait_for(lambda: value(get(base + "/metrics")[2], "trainwarden_train_iteration", run="exp") == 100, timeout=10)


def test_an_injected_clock_moves_the_judgement(tmp_path, agent_on):
    """Documents are reused while nothing changes, but time passing is a change: a run that logs nothing for
    hours on the agent's clock is stalled at the next request."""
    from conftest import Clock

    clock = Clock()
    clock.t = time.time()
    log = tmp_path / "work_dirs" / "exp" / "20251111_180600" / "20251111_180600.log"
    log.parent.mkdir(parents=True)
    text = "".join(line(time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(clock.t - 60 + 20 * k)),
                        train_line(1, 50 * (k + 1), "0.3000")).decode() for k in range(3))
    log.write_text(text, encoding="utf-8")
    agent, base = agent_on(tmp_path / "work_dirs", clock=clock)
    assert agent.status_document()["runs"][0]["state"] == "running"
    clock.t += 6 * 3600
    # no config dump states its length and no process is seen: quiet for hours, it has `ended` (a live process
    # that stops moving would be `stalled`)
    assert agent.status_document()["runs"][0]["state"] == "ended"
    assert value(get(base + "/metrics")[2], "trainwarden_run_state", run="exp", state="ended") == 1
