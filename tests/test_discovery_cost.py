"""What finding processes and routing file events cost: a run whose trainer is not here is not looked for at every
discovery (each look walks every process of the machine), and one look serves every run."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest
from conftest import wait_for

from trainwarden.ingest.fleet import Fleet
from trainwarden.ingest.host import process
from trainwarden.ingest.host.process import ProcessTracker, RunTarget

HOLD_LOG = "import sys, time; f = open(sys.argv[1], 'a'); time.sleep(30)"


class CountingPsutil:
    """The real psutil, counting the walks over every process and the open-file listings."""

    def __init__(self) -> None:
        self.walks = 0
        self.listings = 0

    def __getattr__(self, name):
        return getattr(psutil, name)

    def process_iter(self, *args, **kwargs):
        self.walks += 1
        for proc in psutil.process_iter(*args, **kwargs):
            yield _CountingProcess(proc, self)


class _CountingProcess:
    def __init__(self, proc, counter: CountingPsutil) -> None:
        self._proc, self._counter = proc, counter

    def __getattr__(self, name):
        return getattr(self._proc, name)

    def open_files(self):
        self._counter.listings += 1
        return self._proc.open_files()


def make_run(tmp_path, name: str) -> RunTarget:
    log = tmp_path / name / "20251111_180600" / "20251111_180600.log"
    log.parent.mkdir(parents=True)
    log.write_text("x\n", encoding="utf-8")  # written now: a live run
    return RunTarget(name, tmp_path / name, [log])


@pytest.fixture
def holder():
    procs = []

    def start(log):
        proc = subprocess.Popen([sys.executable, "-c", HOLD_LOG, str(log)])
        procs.append(proc)
        wait_for(lambda: any(f.path == str(log) for f in psutil.Process(proc.pid).open_files()))
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def test_a_run_looked_for_in_vain_waits_longer_each_time(tmp_path, holder):
    now = [time.time()]
    tracker = ProcessTracker(clock=lambda: now[0])
    run = make_run(tmp_path, "run")
    tracker.discover([run])  # t=0: nothing
    now[0] += process.SEARCH_AGAIN_FIRST_SECONDS
    tracker.discover([run])  # t=1: nothing; next look at t=3
    proc = holder(run.logs[0])  # the trainer appears now
    now[0] += 1.9
    tracker.discover([run])
    assert tracker.document("run") is None  # t=2.9: still waiting
    now[0] += 0.1
    tracker.discover([run])
    assert tracker.document("run").pid == proc.pid  # t=3: looked for, found


def test_a_new_session_is_looked_for_at_once(tmp_path, holder):
    now = [time.time()]
    tracker = ProcessTracker(clock=lambda: now[0])
    run = make_run(tmp_path, "run")
    tracker.discover([run])  # nothing: waits 1 s now
    resumed = run.work_dir / "20251112_090000" / "20251112_090000.log"
    resumed.parent.mkdir()
    resumed.write_text("x\n", encoding="utf-8")
    proc = holder(resumed)
    tracker.discover([RunTarget("run", run.work_dir, [*run.logs, resumed])])
    assert tracker.document("run").pid == proc.pid


def test_one_walk_of_the_processes_serves_every_run_and_waiting_costs_none(tmp_path, holder):
    counting = CountingPsutil()
    now = [time.time()]
    tracker = ProcessTracker(psutil_module=counting, clock=lambda: now[0])
    runs = [make_run(tmp_path, f"run{k}") for k in range(8)]
    holder(runs[3].logs[0])
    tracker.discover(runs)
    assert counting.walks == 1
    assert tracker.document("run3") is not None
    pythons = sum(1 for p in psutil.process_iter(["cmdline"]) if "python" in " ".join(p.info["cmdline"] or [])[:200])
    assert counting.listings <= pythons + 5  # each Python process's open files once, not once per run
    tracker.discover(runs)  # the other 7 wait: no walk at all
    assert counting.walks == 1


def test_file_events_find_their_run_and_nothing_outside_or_after_removal(tmp_path):
    root = tmp_path / "work_dirs"
    session = root / "run" / "20251111_180600"
    session.mkdir(parents=True)
    (session / "20251111_180600.log").write_text("x\n", encoding="utf-8")
    fleet = Fleet([root])
    fleet.rediscover()
    reader = fleet.readers[root / "run"]
    log = session / "20251111_180600.log"
    assert fleet.reader_for(log) is reader
    assert fleet.reader_for(str(log)) is reader
    assert fleet.reader_for(root / "run") is reader
    assert fleet.reader_for(root / "other" / "x.log") is None
    assert fleet.reader_for(tmp_path) is None
    assert reader.watches(str(log)) and reader.watches(log) and not reader.watches(str(session))
    for path in sorted((root / "run").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "run").rmdir()
    fleet.rediscover()
    assert fleet.reader_for(log) is None


def test_the_config_and_notifier_load_no_notification_module_without_a_target(tmp_path):
    """hashlib loads OpenSSL's libcrypto (3.6 MB resident): only an agent that notifies needs it."""
    code = ("import sys\n"
            "from trainwarden.app.config import load_config\n"
            "from trainwarden.app.notifier import build_notifier\n"
            "assert build_notifier(load_config(None), None, []) is None\n"
            "print(sorted(m for m in sys.modules if m == 'hashlib' or m.startswith('trainwarden.outputs.notify')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_captures_are_told_by_content_without_rereading_a_folder_of_data(tmp_path, monkeypatch):
    """A watched tree holding a dataset's label files: each is read at most once, and one look reads a bounded
    number; a capture among them is still found (issue 12, finding 10)."""
    from trainwarden.ingest.files import discover

    labels = tmp_path / "data" / "labels"
    labels.mkdir(parents=True)
    row = b"0 0.5 0.5 0.1 0.1\n" * 600  # over FIRST_BYTES: its first bytes are final
    for i in range(600):
        (labels / f"{i:05d}.txt").write_bytes(row)
    job = tmp_path / "slurm-7.out"
    job.write_bytes(b"srun: job 7\n06/11 19:45:14 - mmengine - INFO - Epoch(train)  [1][ 50/100]  loss: 0.5\n")
    reads = []
    real_first_bytes = discover._DirView.first_bytes

    def counting(view, path):
        reads.append(str(view.path / path))
        return real_first_bytes(view, path)

    monkeypatch.setattr(discover._DirView, "first_bytes", counting)
    looks = []
    for _ in range(4):
        reads.clear()
        assert discover.find_work_dirs(tmp_path) == [job]
        looks.append(len(reads))
    assert all(n <= discover.MAX_SNIFFS_PER_DIR + 1 for n in looks)  # the capture itself is small: read each look
    assert looks[-1] == 1  # every label file read once, over the first looks, then never again
