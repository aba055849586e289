"""Finding and following a run's training process, with real child processes; GPUs mapped to runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import fake_pynvml as fake
import psutil
import pytest
from conftest import free_port, wait_for
from test_agent import value

from trainwarden.app.agent import Agent
from trainwarden.ingest.host.nvml import Nvml
from trainwarden.ingest.host.process import ProcessTracker, RunTarget
from trainwarden.ingest.host.sources import HostSources

CONFIG = "stage2_1_kaist_detonly_pure_detection.py"
HOLD_LOG = "import sys, time; f = open(sys.argv[1], 'a'); time.sleep(float(sys.argv[2])); sys.exit(int(sys.argv[3]))"


@pytest.fixture
def work_dir(tmp_path):
    wd = tmp_path / "stage2_1_pure_detection"
    session = wd / "20251111_180600"
    session.mkdir(parents=True)
    log = session / "20251111_180600.log"
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    log.write_text(f"{now} - mmengine - INFO - Epoch(train)  [1][  50/1000]  lr: 4.0000e-05  eta: 0:10:00  "
                   "time: 0.4567  data_time: 0.0123  memory: 5432  loss: 0.3000\n", encoding="utf-8")
    (wd / CONFIG).write_text("train_cfg = dict(max_epochs=5)\n", encoding="utf-8")
    return wd


def target(wd, **kw) -> RunTarget:
    return RunTarget("run", wd, [wd / "20251111_180600" / "20251111_180600.log"], CONFIG, **kw)


@pytest.fixture
def children():
    procs = []

    def spawn(*args, **kw) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, *args], **kw)
        procs.append(p)
        return p

    yield spawn
    for p in procs:  # the whole tree: a worker left behind would be found by the next test
        try:
            tree = psutil.Process(p.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        for proc in [*tree]:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        if p.poll() is None:
            p.kill()
        try:
            p.wait(timeout=5)
        except (ChildProcessError, subprocess.TimeoutExpired):
            pass


def test_found_by_the_log_it_holds_open_and_its_exit_code_kept(work_dir, children):
    log = work_dir / "20251111_180600" / "20251111_180600.log"
    child = children("-c", HOLD_LOG, str(log), "1.5", "3")
    tracker = ProcessTracker()
    wait_for(lambda: tracker.discover([target(work_dir)]) or "run" in tracker.tracked, timeout=10)
    doc = tracker.document("run")
    assert doc.pid == child.pid and doc.up and doc.matched_by == "open_log"
    assert doc.start_timestamp_seconds == pytest.approx(psutil.Process(child.pid).create_time())
    wait_for(tracker.check, timeout=10)
    doc = tracker.document("run")
    assert not doc.up and doc.exit_code == 3 and doc.end_timestamp_seconds is not None


def test_found_by_its_config_with_dataloader_workers_below_it(work_dir, children):
    script_file = work_dir.parent / "train.py"
    script_file.write_text(
        "import subprocess, sys, time\n"
        "if 'worker' not in sys.argv:\n"
        "    subprocess.Popen([sys.executable, __file__, *sys.argv[1:], 'worker'])\n"
        "time.sleep(30)\n", encoding="utf-8")
    child = children(str(script_file), f"configs/llvip/{CONFIG}", "--work-dir", str(work_dir))
    tracker = ProcessTracker()

    def found_with_worker():
        tracker.discover([target(work_dir)])
        tracker.check(refresh_descendants=True)
        doc = tracker.document("run")
        return doc if doc and len(doc.pids) == 2 else None

    doc = wait_for(found_with_worker, timeout=15)
    assert doc.pid == child.pid and doc.matched_by == "cmdline_work_dir"  # the top-most, not the worker
    worker = psutil.Process(child.pid).children()[0]
    child.kill()
    wait_for(tracker.check, timeout=10)
    assert tracker.document("run").exit_code == -9  # killed: our child, so the code is known
    worker.kill()


@pytest.mark.skipif(sys.platform == "win32", reason="uses sh to start a process that is not our child")
def test_a_process_we_did_not_start_ends_with_an_unknown_exit_code(work_dir, tmp_path):
    pid_file = tmp_path / "pid"
    # the shell starts the trainer in the background and exits: the trainer is not our child
    trainer = f'"{sys.executable}" -c "import time; time.sleep(30)" configs/{CONFIG} --work-dir {work_dir}'
    subprocess.run(["sh", "-c", f"{trainer} & echo $! > {pid_file}"], check=True)
    pid = int(wait_for(lambda: pid_file.read_text().strip(), timeout=10))
    try:
        tracker = ProcessTracker()
        wait_for(lambda: tracker.discover([target(work_dir)]) or "run" in tracker.tracked, timeout=10)
        assert tracker.document("run").pid == pid
        psutil.Process(pid).kill()
        wait_for(tracker.check, timeout=10)
        assert tracker.document("run").up is False and tracker.document("run").exit_code is None
    finally:
        if psutil.pid_exists(pid):
            psutil.Process(pid).kill()


def test_pid_from_the_config_and_processes_that_only_look_alike(work_dir, children):
    lookalikes = [
        children("-c", "import time; time.sleep(30)", "--logdir", str(work_dir)),  # tensorboard-like: no train script
        children("-m", "trainwarden", "watch", str(work_dir), "--web.listen-address", f"127.0.0.1:{free_port()}"),
    ]
    tracker = ProcessTracker()
    time.sleep(0.3)
    tracker.discover([target(work_dir)])
    assert tracker.document("run") is None
    tracker.discover([target(work_dir, pid=lookalikes[0].pid)])
    assert tracker.document("run").matched_by == "config_pid"


def test_gpus_map_to_the_run_through_its_processes(work_dir, children, tmp_path):
    log = work_dir / "20251111_180600" / "20251111_180600.log"
    child = children("-c", HOLD_LOG, str(log), "30", "1")
    module = fake.make(fake.gpus(2))
    module.gpus[1].processes = [(child.pid, 5 * 2**30), (999_999, 2**30)]
    host = HostSources(nvml=Nvml(loader=lambda: module))
    agent = Agent([work_dir.parent], "127.0.0.1", 0, poll_interval=0.2, rediscover_interval=0.5, host_sources=host)
    agent.start()
    try:
        base = f"http://127.0.0.1:{agent.address[1]}"

        def metrics():
            with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
                return r.read().decode()

        run = "stage2_1_pure_detection"
        wait_for(lambda: value(metrics(), "trainwarden_process_up", run=run) == 1, timeout=15)
        text = metrics()
        uuid = module.gpus[1].uuid
        assert value(text, "trainwarden_gpu_run_info", run=run, gpu="1", uuid=uuid) == 1
        assert value(text, "trainwarden_run_gpu_memory_used_bytes", run=run, gpu="1", uuid=uuid) == 5 * 2**30
        assert value(text, "trainwarden_gpu_run_info", run=run, gpu="0", uuid=module.gpus[0].uuid) is None
        assert value(text, "trainwarden_gpu_temperature_celsius", gpu="0", uuid=module.gpus[0].uuid) == 71
        assert value(text, "trainwarden_gpu_energy_joules_total", gpu="1", uuid=uuid) == pytest.approx(123456.789)
        assert value(text, "trainwarden_collector_success", collector="gpu") == 1
        with urllib.request.urlopen(base + "/api/runs", timeout=5) as r:
            doc = json.loads(r.read())
        assert doc["runs"][0]["gpus"] == [{"index": 1, "uuid": uuid, "memory_used_bytes": 5 * 2**30}]
        assert doc["gpus"][1]["runs"] == [run] and doc["gpus"][0]["runs"] == []
        # the GPU falls off the bus: run metrics keep coming, the gpu collector reports the failure
        module.gpus[1].lost = True  # (the agent reuses its document for up to a second while no run changes)
        wait_for(lambda: value(metrics(), "trainwarden_collector_success", collector="gpu") == 0, timeout=5)
        text = metrics()
        assert value(text, "trainwarden_train_loss", run=run) == 0.3
        assert value(text, "trainwarden_gpu_temperature_celsius", gpu="1", uuid=uuid) is None
        # the trainer dies: process_up 0 and the run is crashed, with its exit code
        child.kill()
        wait_for(lambda: value(metrics(), "trainwarden_process_up", run=run) == 0, timeout=15)
        text = metrics()
        assert value(text, "trainwarden_run_state", run=run, state="crashed") == 1
        assert value(text, "trainwarden_process_exit_code", run=run) == -9
    finally:
        agent.stop()


def test_run_s_child_stays_the_run_s_process_with_its_exit_code(work_dir, children):
    """Under `trainwarden run` the exit status is known: the ended child, with its code, is not replaced by a
    process that names the work dir (its DataLoader worker outliving it a moment, or a lookalike)."""
    child = children("-c", "import sys; sys.stdin.read()", "--work-dir", str(work_dir), stdin=subprocess.PIPE)
    worker = children("-c", "import time; time.sleep(60)", "--work-dir", str(work_dir))
    wait_for(lambda: psutil.Process(worker.pid).cmdline()[-1] == str(work_dir), timeout=10)
    tracker = ProcessTracker()
    tracker.adopt("run", child.pid)
    child.communicate(b"", timeout=10)
    tracker.report_exit("run", child.returncode)
    tracker._next_search.clear()
    tracker.discover([target(work_dir)])
    doc = tracker.document("run")
    assert (doc.pid, doc.up, doc.exit_code, doc.matched_by) == (child.pid, False, 0, "started_by_trainwarden")


def test_the_workers_of_an_ended_training_are_not_a_new_one(work_dir, children, tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import subprocess, sys, time\n"
                      "if 'worker' not in sys.argv:\n"
                      "    subprocess.Popen([sys.executable, __file__, *sys.argv[1:], 'worker'])\n"
                      "time.sleep(60)\n", encoding="utf-8")
    trainer = children(str(script), "--work-dir", str(work_dir))
    tracker = ProcessTracker()

    def found_with_worker():
        tracker.discover([target(work_dir)])
        tracker.check(refresh_descendants=True)
        doc = tracker.document("run")
        return doc if doc and len(doc.pids) == 2 else None

    assert wait_for(found_with_worker, timeout=15).pid == trainer.pid
    trainer.kill()
    wait_for(tracker.check, timeout=10)  # ended; its worker lives on
    tracker._next_search.clear()
    tracker._searched.clear()
    tracker.discover([target(work_dir)])
    doc = tracker.document("run")
    assert doc.pid == trainer.pid and not doc.up
