"""A process belongs to a run only when it trains into the run's work dir (issue 12, finding 1): real processes,
started with the argv and working folder they would have; no mocks.

The command lines are those of MMDetection 3.x's `tools/train.py` and `tools/dist_train.sh` (kept byte for byte
in DIST_TRAIN below), torchrun's, and the tools that read a config without training."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import wait_for

from trainwarden.ingest.fleet import Fleet
from trainwarden.ingest.host.cmdline import training_command, work_dir_candidates
from trainwarden.ingest.host.process import ProcessTracker, RunTarget
from trainwarden.ingest.host.sources import HostSources

COCO = "faster-rcnn_r50_fpn_1x_coco"
SLEEP = "import time; time.sleep(60)"
# MMDetection 3.x tools/dist_train.sh
DIST_TRAIN = """#!/usr/bin/env bash

CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$(dirname $0)/..":$PYTHONPATH \\
python -m torch.distributed.launch \\
    --nnodes=$NNODES \\
    --node_rank=$NODE_RANK \\
    --master_addr=$MASTER_ADDR \\
    --nproc_per_node=$GPUS \\
    --master_port=$PORT \\
    $(dirname "$0")/train.py \\
    $CONFIG \\
    --launcher pytorch ${@:3}
"""
# a stand-in for torch.distributed.launch / torchrun: starts --nproc_per_node workers of the script, as they do
LAUNCH = r'''
import subprocess, sys
args = sys.argv[1:]
n = int(next(a.split("=")[1] for a in args if a.startswith("--nproc_per_node")))
i = next(i for i, a in enumerate(args) if a.endswith(".py"))
workers = [subprocess.Popen([sys.executable, "-u", args[i], f"--local_rank={r}", *args[i + 1:]]) for r in range(n)]
for w in workers:
    w.wait()
'''


def mmdet_run(root: Path, name: str = COCO) -> Path:
    """A live MMEngine work dir: one session log being written."""
    wd = root / "work_dirs" / name
    session = wd / "20251111_180600"
    session.mkdir(parents=True)
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    (session / "20251111_180600.log").write_text(
        f"{now} - mmengine - INFO - Epoch(train)  [1][  50/1000]  lr: 2.0000e-02  eta: 0:10:00  time: 0.4567  "
        "data_time: 0.0123  memory: 5432  loss: 1.3000\n", encoding="utf-8")
    return wd


def target(wd: Path, run: str = "run", **kw) -> RunTarget:
    return RunTarget(run, wd, [wd / "20251111_180600" / "20251111_180600.log"], f"{COCO}.py", **kw)


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen] = []

    def start(argv: list[str], cwd: Path, **kw) -> subprocess.Popen:
        cwd.mkdir(parents=True, exist_ok=True)
        p = subprocess.Popen(argv, cwd=cwd, **kw)
        procs.append(p)
        # seen by psutil with its own command line (until it execs, the child shows pytest's)
        wait_for(lambda: _cmdline(p.pid)[1:] == argv[1:], timeout=10)
        return p

    yield start
    for p in procs:  # the whole tree: a worker left behind would be found by the next test
        try:
            tree = psutil.Process(p.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        for proc in tree:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _found(tracker: ProcessTracker, t: RunTarget):
    tracker._next_search.clear()  # every call looks again (the back-off is tested elsewhere)
    tracker.discover([t])
    return tracker.document(t.run)


def test_command_lines_name_their_work_dir():
    def wd(*argv: str, dump=(None, None)):
        command = training_command(list(argv))
        return None if command is None else work_dir_candidates(command, *dump)

    py = sys.executable
    assert wd(py, "tools/train.py", f"configs/faster_rcnn/{COCO}.py") == [f"work_dirs/{COCO}"]
    assert wd(py, "tools/train.py", f"configs/{COCO}.py", "--work-dir", "wd/a") == ["wd/a"]
    assert wd(py, "tools/train.py", f"configs/{COCO}.py", "--work-dir=wd/b") == ["wd/b"]
    assert wd(py, "tools/train.py", "c.py", "--cfg-options", "work_dir=wd/c", "--amp") == ["wd/c"]
    assert wd(py, "tools/train.py", "c.py", "--cfg-options", "work_dir=wd/c", "--work-dir", "wd/d") == ["wd/d"]
    assert wd(py, "-u", "tools/train.py", "--local_rank=3", "configs/x.py", "--launcher", "pytorch") == ["work_dirs/x"]
    assert wd(py, "-m", "torch.distributed.launch", "--nnodes=1", "--node_rank=0", "--master_addr=127.0.0.1",
              "--nproc_per_node=8", "--master_port=29500", "tools/../tools/train.py", "configs/x.py", "--launcher",
              "pytorch", "--work-dir", "w") == ["w"]
    assert wd(py, "/venv/bin/torchrun", "--nproc_per_node=2", "tools/train.py", "configs/x.py") == ["work_dirs/x"]
    # the config's own work_dir (the run's config dump says it) when the command names no work dir
    dump = (f"{COCO}.py", "./work_dirs/mine")
    assert wd(py, "tools/train.py", f"configs/{COCO}.py", dump=dump) == ["./work_dirs/mine"]
    assert wd(py, "tools/train.py", "configs/other.py", dump=dump) == ["work_dirs/other"]
    assert wd(py, "-c", SLEEP, f"configs/{COCO}.py", "--work-dir", "work_dirs/their_exp") == ["work_dirs/their_exp"]
    # tools that read a config without training, our own commands, and what is not Python
    for argv in (["tools/test.py", f"configs/{COCO}.py", "epoch_12.pth", "--work-dir", "w"],
                 ["tools/misc/print_config.py", f"configs/{COCO}.py"],
                 ["tools/analysis_tools/browse_dataset.py", f"configs/{COCO}.py"],
                 ["tools/analysis_tools/analyze_logs.py", "plot_curve", "w/20251111_180600.json"],
                 ["tools/analysis_tools/get_flops.py", f"configs/{COCO}.py"],
                 ["demo/image_demo.py", "demo.jpg", f"configs/{COCO}.py"],
                 ["-m", "trainwarden", "watch", "work_dirs"], ["/venv/bin/trainwarden", "run", "--work-dir", "w"]):
        assert wd(py, *argv) is None, argv
    assert wd("bash", "tools/dist_train.sh", f"configs/{COCO}.py", "8") is None
    assert wd(py, "tools/my_train_test.py", "configs/x.py") == ["work_dirs/x"]  # `train` in its name: it trains


def test_a_config_named_in_another_folder_is_not_the_run(tmp_path, spawn):
    """The issue's reproduction: a sleep naming the run's config (and another work dir) from another folder made a
    live run `crashed`. Neither it, nor test.py or print_config.py naming the run's very work dir, is the trainer."""
    proj = tmp_path / "proj"
    wd = mmdet_run(proj)
    other = tmp_path / "other"
    py = sys.executable
    spawn([py, "-c", SLEEP, f"configs/{COCO}.py", "--work-dir", "work_dirs/their_exp"], other)
    spawn([py, "-c", SLEEP, f"configs/{COCO}.py"], other)  # default work dir: other/work_dirs/<config>
    (proj / "tools").mkdir()
    for tool in ("test.py", "print_config.py", "browse_dataset.py"):
        (proj / "tools" / tool).write_text(SLEEP, encoding="utf-8")
        spawn([py, f"tools/{tool}", f"configs/{COCO}.py", "--work-dir", str(wd)], proj)
    tracker = ProcessTracker()
    assert _found(tracker, target(wd)) is None
    (proj / "tools" / "train.py").write_text(SLEEP, encoding="utf-8")
    trainer = spawn([py, "tools/train.py", f"configs/faster_rcnn/{COCO}.py"], proj)  # default work dir, from proj
    doc = wait_for(lambda: _found(tracker, target(wd)), timeout=15)
    assert doc.pid == trainer.pid and doc.matched_by == "cmdline_work_dir"


def test_two_trainings_of_one_config_are_two_runs_with_their_own_processes(tmp_path, spawn):
    py = sys.executable
    runs = {}
    for name in ("a", "b"):
        proj = tmp_path / name
        wd = mmdet_run(proj)
        (proj / "train.py").write_text(SLEEP, encoding="utf-8")
        runs[name] = (wd, spawn([py, "train.py", f"configs/{COCO}.py"], proj))
    tracker = ProcessTracker()
    for name, (wd, proc) in runs.items():
        doc = wait_for(lambda wd=wd, name=name: _found(tracker, target(wd, run=name)), timeout=15)
        assert doc.pid == proc.pid, name


def test_the_work_dir_the_config_sets_is_read_from_the_config_dump(tmp_path, spawn):
    """`work_dir = './work_dirs/stage2_1_pure_detection'` in the config (the guide's run): a trainer started without
    --work-dir from the project folder is the run's; the same command from another folder is not."""
    proj = tmp_path / "proj"
    wd = proj / "work_dirs" / "stage2_1_pure_detection"
    session = wd / "20251111_180600"
    session.mkdir(parents=True)
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    (session / "20251111_180600.log").write_text(
        f"{now} - mmengine - INFO - Config:\ntrain_cfg = dict(type='EpochBasedTrainLoop', max_epochs=5, val_interval=1)\n"
        "work_dir = './work_dirs/stage2_1_pure_detection'\n"
        f"{now} - mmengine - INFO - Epoch(train)  [1][  50/1000]  lr: 4.0000e-05  eta: 0:10:00  time: 0.4567  "
        "data_time: 0.0123  memory: 5432  loss: 0.3000\n", encoding="utf-8")
    config = "stage2_1_kaist_detonly_pure_detection.py"
    (wd / config).write_text("work_dir = './work_dirs/stage2_1_pure_detection'\n", encoding="utf-8")
    py = sys.executable
    for folder in (proj, tmp_path / "elsewhere"):
        (folder / "tools").mkdir(parents=True)
        (folder / "tools" / "train.py").write_text(SLEEP, encoding="utf-8")
    spawn([py, "tools/train.py", f"configs/llvip/{config}"], tmp_path / "elsewhere")
    fleet = Fleet([proj / "work_dirs"])
    fleet.rediscover()
    host = HostSources(tracker=ProcessTracker())
    (t,) = host.targets(fleet)
    assert t.configured_work_dir == "./work_dirs/stage2_1_pure_detection" and t.config_name == config
    assert _found(host.tracker, t) is None
    trainer = spawn([py, "tools/train.py", f"configs/llvip/{config}"], proj)
    assert wait_for(lambda: _found(host.tracker, t), timeout=15).pid == trainer.pid


@pytest.mark.skipif(sys.platform == "win32", reason="dist_train.sh is a bash script")
def test_dist_train_sh_and_torchrun_are_found_with_their_workers(tmp_path, spawn):
    py = sys.executable
    proj = tmp_path / "mmdetection"
    (proj / "tools").mkdir(parents=True)
    (proj / "tools" / "dist_train.sh").write_text(DIST_TRAIN, encoding="utf-8")
    (proj / "tools" / "train.py").write_text(SLEEP, encoding="utf-8")
    fake = tmp_path / "site"
    (fake / "torch" / "distributed").mkdir(parents=True)
    for init in ("torch/__init__.py", "torch/distributed/__init__.py"):
        (fake / init).write_text("", encoding="utf-8")
    (fake / "torch" / "distributed" / "launch.py").write_text(LAUNCH, encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(py)
    (bin_dir / "torchrun").write_text(LAUNCH, encoding="utf-8")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(fake)}
    for name, argv in (
        ("dist", ["bash", "tools/dist_train.sh", f"configs/faster_rcnn/{COCO}.py", "2", "--work-dir", "work_dirs/dist"]),
        ("torchrun", [py, str(bin_dir / "torchrun"), "--nproc_per_node=2", "tools/train.py", f"configs/{COCO}.py",
                      "--launcher", "pytorch"]),
    ):
        wd = mmdet_run(proj, "dist" if name == "dist" else COCO)
        top = spawn(argv, proj, env=env)
        tracker = ProcessTracker()

        def with_workers(wd=wd, tracker=tracker, name=name):
            _found(tracker, target(wd, run=name))
            tracker.check(refresh_descendants=True)
            doc = tracker.document(name)
            return doc if doc is not None and len(doc.pids) >= 3 else None

        doc = wait_for(with_workers, timeout=20)
        launcher = psutil.Process(doc.pid)
        assert "-m" in launcher.cmdline() or str(bin_dir / "torchrun") in launcher.cmdline(), name  # not a worker
        assert launcher.pid == top.pid or launcher.ppid() == top.pid, name  # below dist_train.sh's bash
        for p in [top, *psutil.Process(top.pid).children(recursive=True)]:
            p.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="psutil knows a file's open mode on Linux only")
def test_a_process_reading_the_log_is_not_the_trainer(tmp_path, spawn):
    wd = mmdet_run(tmp_path)
    log = wd / "20251111_180600" / "20251111_180600.log"
    hold = "import sys, time; f = open(sys.argv[1], sys.argv[2]); time.sleep(60)"
    reader = spawn([sys.executable, "-c", hold, str(log), "r"], tmp_path)  # a script following the log
    wait_for(lambda: any(Path(f.path) == log for f in psutil.Process(reader.pid).open_files()), timeout=10)
    tracker = ProcessTracker()
    assert _found(tracker, target(wd)) is None
    writer = spawn([sys.executable, "-c", hold, str(log), "a"], tmp_path)
    doc = wait_for(lambda: _found(tracker, target(wd)), timeout=15)
    assert doc.pid == writer.pid and doc.matched_by == "open_log"


def test_the_demo_adopts_no_process_that_names_its_config(tmp_path, spawn):
    """`trainwarden demo` paged a red ProcessExited at epoch 5, then TargetMissed 2 s before TargetReached: a process
    elsewhere naming the demo's config (the guide's real config name: the user's own training of it, or a test) was
    taken for the demo run's trainer, and ended."""
    from conftest import run_cli
    from sinks import HttpSink

    from trainwarden.app.demo import CONFIG_NAME

    # it ends during the replay: once the demo has saved its second checkpoint
    until = "import pathlib, sys, time\nwhile not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.05)"
    marker = tmp_path / "demo" / "stage2_1_pure_detection" / "epoch_2.pth"
    spawn([sys.executable, "-c", until, str(marker), f"configs/llvip/{CONFIG_NAME}.py"], tmp_path / "proj")
    sink = HttpSink()
    try:
        result = run_cli("demo", "--dir", str(tmp_path / "demo"), "--duration", "8", "--linger", "0", "--notify",
                         sink.url(), "--web.listen-address", "127.0.0.1:0", timeout=120)
    finally:
        sink.close()
    assert result.returncode == 0, result.stderr
    titles = sink.delivered_titles()
    assert not [t for t in titles if "ProcessExited" in t or "TargetMissed" in t], titles
    assert any("TrainingFinished" in t for t in titles), titles
