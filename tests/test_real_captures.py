"""Real Slurm captures of MMDetection 2.x (mmcv) and MMSegmentation 1.x (MMEngine) jobs are read as runs (issue 12,
finding 10). The files are tests/fixtures/real-captures/, copied byte for byte (provenance in its README); every
expectation below was read off the capture by hand, not off trainwarden's output.

The captures are copied into a temporary folder whose files are dated as the trainings were (February 2023):
MMEngine's console lines carry no year, and a capture's year is that of its last change, which a fresh checkout
sets to today."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FIXTURES, free_port, run_cli, wait_for
from test_agent import value

CAPTURES = FIXTURES / "real-captures"
BALLOON = "mmdet2x_maskrcnn_balloon_slurm"  # slurm-286479.out beside work/balloon/20230208_112253.log(.json)
SATELLITE = "mmseg1x_pspnet_satellite_slurm"  # slurm-300830.out beside work/satellite_building/20230211_201914/
MOUSE_TEST = "mmseg1x_pspnet_mouse_test_slurm"  # slurm-299856.out: tools/test.py of a finished training
NOT_TRAINING = "not_training"  # slurm-286628.out (mmdet 2.x test.py, no logger line), slurm-299896.out (benchmark)
WRITTEN = time.mktime((2023, 2, 12, 12, 0, 0, 0, 0, -1))  # the day after the last of these jobs


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real-captures")
    shutil.copytree(CAPTURES, root, dirs_exist_ok=True)
    for path in root.rglob("*"):
        os.utime(path, (WRITTEN, WRITTEN))
    return root


def status(path: Path) -> tuple[int, dict]:
    result = run_cli("status", "--json", str(path))
    assert result.returncode in (0, 3), result.stderr
    return result.returncode, json.loads(result.stdout)


def runs_of(doc: dict) -> dict[str, dict]:
    return {run["run"]: run for run in doc["runs"]}


def pages(run: dict) -> list[str]:
    return [f"{c['alert']} ({c['severity']}): {c['summary']}" for c in run["conditions"] if c["severity"] != "info"]


@dataclass(frozen=True)
class Capture:
    path: str  # under tests/fixtures/real-captures/
    framework: str
    state: str
    unit: str  # "epoch" or "iteration": how the training counts
    number: int | None  # the last epoch or iteration trained
    maximum: int | None  # max_epochs or max_iters
    evaluations: int
    key: str  # the evaluated key
    last: float  # its value at the last evaluation
    best: tuple[float, int] | None  # best value and where, as the log states it


# Read off each capture:
# - slurm-286479.out: `runner = dict(type='EpochBasedRunner', max_epochs=100)`, no train line at all (13
#   iterations an epoch, under the log interval), `Epoch(val) [N][13]  bbox_mAP: ...` after each of the 100 epochs, the last
#   `bbox_mAP: 0.7751`; `Now best checkpoint is saved as best_bbox_mAP_epoch_95.pth` with `Best bbox_mAP is 0.7757`.
# - slurm-300830.out: `train_cfg = dict(type='IterBasedTrainLoop', max_iters=10000, val_interval=500)`, the last
#   train line `Iter(train) [10000/10000] ... eta: 0:00:00`, 20 `Iter(val) [1206/1206]  aAcc: ... mIoU: ...` lines,
#   the last `mIoU: 77.4100`, the highest `mIoU: 78.4600` at iteration 9500 (no save_best: no best checkpoint).
# - slurm-299856.out: tools/test.py: the config dump of an 800-iteration training, then one
#   `Iter(test) [515/515]  aAcc: 99.1600  mIoU: 81.0100  mAcc: 87.4000`; no training line.
TRUTHS = [
    Capture(f"{BALLOON}/slurm-286479.out", "mmcv", "finished", "epoch", 100, 100, 100, "bbox_mAP", 0.7751, (0.7757, 95)),
    Capture(f"{SATELLITE}/slurm-300830.out", "mmengine", "finished", "iteration", 10000, 10000, 20, "mIoU", 77.41,
            (78.46, 9500)),
    Capture(f"{MOUSE_TEST}/slurm-299856.out", "mmengine", "finished", "iteration", None, 800, 1, "mIoU", 81.01, None),
]


@pytest.mark.parametrize("truth", TRUTHS, ids=lambda t: Path(t.path).name)
def test_status_of_a_real_capture_file(captures, truth: Capture):
    code, doc = status(captures / truth.path)
    name = Path(truth.path).name
    assert list(runs_of(doc)) == [name]
    run = runs_of(doc)[name]
    assert run["framework"] == truth.framework
    assert run[truth.unit] == truth.number
    assert run["max_epochs" if truth.unit == "epoch" else "max_iterations"] == truth.maximum
    assert len(run["evaluations"]) == truth.evaluations
    assert run["evaluations"][-1]["metrics"][truth.key] == pytest.approx(truth.last)
    if truth.best is not None:
        unit = "epoch" if truth.unit == "epoch" else "iteration"
        assert (run["best"]["key"], run["best"]["value"], run["best"][unit]) == (truth.key, *truth.best)
    # years old: history, finished as the log says, and no page
    assert run["state"] == truth.state and run["history"] is True
    assert run["health"] != "red" and not pages(run), pages(run)
    assert all(n == 0 for n in run["log"]["errors_total"].values())  # none of them holds an error
    assert code == 0


def test_a_year_less_capture_is_dated_as_its_work_dir_log(captures):
    """slurm-300830.out's `02/11 20:47:14` lines are the work dir log's `2023/02/11 20:47:14` lines."""
    alone = runs_of(status(captures / SATELLITE / "slurm-300830.out")[1])["slurm-300830.out"]
    log = captures / SATELLITE / "work" / "satellite_building" / "20230211_201914" / "20230211_201914.log"
    last_train = [line for line in log.read_text(encoding="utf-8").splitlines() if "Iter(train)" in line][-1]
    stamp = time.mktime(time.strptime(last_train[:19], "%Y/%m/%d %H:%M:%S"))
    assert alone["last_train_timestamp_seconds"] == pytest.approx(stamp)


@pytest.mark.parametrize(("folder", "work_dir", "unit", "number", "evaluations", "key", "last"), [
    (BALLOON, "work/balloon", "epoch", 100, 100, "bbox_mAP", 0.7751),
    (SATELLITE, "work/satellite_building", "iteration", 10000, 20, "mIoU", 77.41),
])
def test_a_capture_beside_its_work_dir_is_one_run_the_work_dirs(captures, folder, work_dir, unit, number,
                                                                evaluations, key, last):
    """Each capture names its work dir (`Checkpoints will be saved to /data/run01/.../work/balloon`, the cluster's
    path): read here, the work dir of that name and parent's name beside the capture is the same training."""
    code, doc = status(captures / folder)
    runs = runs_of(doc)
    assert list(runs) == [Path(work_dir).name]
    run = runs[Path(work_dir).name]
    assert Path(run["work_dir"]) == captures / folder / work_dir
    assert run[unit] == number and len(run["evaluations"]) == evaluations
    assert run["evaluations"][-1]["metrics"][key] == pytest.approx(last)
    assert run["state"] == "finished" and run["health"] != "red" and not pages(run)
    assert code == 0


def test_captures_are_found_by_their_content_in_a_folder_of_job_outputs(captures, tmp_path):
    """A folder of job outputs, as a cluster user keeps them: each training or test capture is a run of its own,
    named by its file; a capture that holds no OpenMMLab logger line (mmdet 2.x tools/test.py prints only progress
    bars and warnings) is none, and nothing in the folder pages."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for path in (captures / BALLOON / "slurm-286479.out", captures / SATELLITE / "slurm-300830.out",
                 captures / MOUSE_TEST / "slurm-299856.out", *sorted((captures / NOT_TRAINING).iterdir())):
        shutil.copy2(path, jobs / path.name)
    code, doc = status(jobs)
    runs = runs_of(doc)
    assert {"slurm-286479.out", "slurm-300830.out", "slurm-299856.out"} <= set(runs)
    assert "slurm-286628.out" not in runs
    assert runs["slurm-286479.out"]["epoch"] == 100 and runs["slurm-300830.out"]["iteration"] == 10000
    for run in runs.values():
        assert run["health"] != "red" and not pages(run), (run["run"], pages(run))
    assert code == 0


def served(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


def test_watch_of_a_folder_of_job_outputs_reads_each_capture_and_pages_nothing(captures, tmp_path, sink):
    """`watch` on a cluster user's job outputs: every training capture is a run the agent serves, and these
    years-old jobs send no notification (not even the first judgement's)."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for path in (captures / BALLOON / "slurm-286479.out", captures / SATELLITE / "slurm-300830.out"):
        shutil.copy2(path, jobs / path.name)
    config = tmp_path / "trainwarden.yml"
    config.write_text(f"notify:\n  host: box\n  state_dir: {tmp_path / 'state'}\n", encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "trainwarden", "watch", str(jobs), "--config.file", str(config),
                             "--notify", sink.url(), "--web.listen-address", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def read_whole() -> bool:
            text = served(base + "/api/runs")
            runs = runs_of(json.loads(text)) if text else {}
            return (runs.get("slurm-286479.out", {}).get("epoch") == 100
                    and runs.get("slurm-300830.out", {}).get("iteration") == 10000)

        wait_for(read_whole, timeout=60, interval=0.2)
        for _ in range(2):  # judged for the notifier twice after both were read whole
            before = value(served(base + "/metrics"), "trainwarden_collector_duration_seconds", collector="evaluate")
            wait_for(lambda b=before: value(served(base + "/metrics"), "trainwarden_collector_duration_seconds",
                                            collector="evaluate") not in (None, b), timeout=30, interval=0.2)
        runs = runs_of(json.loads(served(base + "/api/runs")))
        assert sorted(runs) == ["slurm-286479.out", "slurm-300830.out"]
        assert all(r["history"] and r["state"] == "finished" and not pages(r) for r in runs.values())
        assert sink.titles() == []
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_benchmark_capture_is_no_training_and_never_pages(captures):
    """slurm-299896.out is mmseg's tools/analysis_tools/benchmark.py: four MMEngine registry warnings, then fps
    lines. It holds MMEngine lines, so it may be listed, but it trained nothing: no progress, no evaluation, and
    nothing to page about (a stall or a crash of a training that never was would be a false red)."""
    code, doc = status(captures / NOT_TRAINING / "slurm-299896.out")
    for run in doc["runs"]:
        assert run["state"] not in ("running", "stalled", "crashed", "finished")
        assert run["evaluations"] == [] and run["iteration"] is None and run["epoch"] is None
        assert not pages(run) and run["health"] != "red"
    assert code == 0


def test_the_whole_fixture_tree_is_four_runs_none_red(captures):
    code, doc = status(captures)
    runs = runs_of(doc)
    assert {"balloon", "satellite_building", "slurm-299856.out"} <= set(runs)
    assert set(runs) - {"balloon", "satellite_building", "slurm-299856.out"} <= {"slurm-299896.out"}
    assert not [pages(r) for r in runs.values() if pages(r)] and code == 0


# No real capture of a failed MMEngine or mmcv job was found in public repositories (see the README): this one is
# the real satellite capture and its real work dir log, both cut after the training's `Iter(train) [ 5000/10000]`
# line, as a crash there leaves them; the capture then ends with the traceback that only the console shows.
OOM = (b"Traceback (most recent call last):\n  File \"train_data.py\", line 96, in <module>\n    runner.train()\n"
       b"RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.70 GiB total capacity; "
       b"19.81 GiB already allocated; 1.06 GiB free; 21.12 GiB reserved in total by PyTorch)\n")


def cut_after(path: Path, marker: bytes, tail: bytes = b"") -> None:
    data = path.read_bytes()
    end = data.index(b"\n", data.index(marker)) + 1
    path.write_bytes(data[:end] + tail)
    os.utime(path, (WRITTEN, WRITTEN))


def test_a_failed_job_shows_its_error_on_its_work_dirs_run(captures, tmp_path):
    folder = tmp_path / SATELLITE
    shutil.copytree(captures / SATELLITE, folder)
    cut_after(folder / "slurm-300830.out", b"Iter(train) [ 5000/10000]", OOM)
    cut_after(folder / "work" / "satellite_building" / "20230211_201914" / "20230211_201914.log",
              b"Iter(train) [ 5000/10000]")
    code, doc = status(folder)
    runs = runs_of(doc)
    assert list(runs) == ["satellite_building"]
    run = runs["satellite_building"]
    assert run["iteration"] == 5000 and len(run["evaluations"]) == 9
    assert run["evaluations"][-1]["metrics"]["mIoU"] == pytest.approx(75.44)
    errors = run["log"]["errors_total"]
    assert errors["cuda_oom"] >= 1 and errors["traceback"] >= 1, errors
    assert run["state"] != "finished"  # it stopped at 5000 of 10000 with a traceback
    assert run["history"] is True and not pages(run) and code == 0, pages(run)  # a crash of 2023 pages no one today


# The source repository's own layout: the user copied the work dir logs out of the cluster into the homework
# folder, and kept the job outputs where sbatch wrote them (homework02/基础作业/ holds slurm-286479.out beside
# 20230208_112253.log; homework03/进阶作业/ holds 20230211_201914.log and logs/slurm-300830.out).
SOURCE_LAYOUT = {
    "homework02/basic": {"slurm-286479.out": f"{BALLOON}/slurm-286479.out",
                         "20230208_112253.log": f"{BALLOON}/work/balloon/20230208_112253.log",
                         "20230208_112253.log.json": f"{BALLOON}/work/balloon/20230208_112253.log.json"},
    "homework03/advanced": {"logs/slurm-300830.out": f"{SATELLITE}/slurm-300830.out",
                            "20230211_201914.log": f"{SATELLITE}/work/satellite_building/20230211_201914/20230211_201914.log"},
}


def source_layout(captures: Path, root: Path) -> Path:
    for folder, files in SOURCE_LAYOUT.items():
        for name, source in files.items():
            (root / folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(captures / source, root / folder / name)
    return root


def test_in_the_source_repositorys_layout_each_training_is_one_run(captures, tmp_path):
    code, doc = status(source_layout(captures, tmp_path))
    runs = runs_of(doc)
    assert sorted(runs) == ["advanced", "basic"]
    assert runs["basic"]["epoch"] == 100 and len(runs["basic"]["evaluations"]) == 100
    assert runs["advanced"]["iteration"] == 10000 and len(runs["advanced"]["evaluations"]) == 20
    assert not [pages(r) for r in runs.values() if pages(r)] and code == 0


@pytest.mark.parametrize(("folder", "capture", "log", "marker", "number"), [
    # the capture beside the work dir's own logs
    ("homework02/basic", "slurm-286479.out", "20230208_112253.log", b"Epoch(val) [50][13]", 50),
    # the capture in a `logs/` folder inside the work dir
    ("homework03/advanced", "logs/slurm-300830.out", "20230211_201914.log", b"Iter(train) [ 5000/10000]", 5000),
])
def test_in_the_source_repositorys_layout_a_failed_jobs_error_reaches_its_run(captures, tmp_path, folder, capture,
                                                                               log, marker, number):
    """Both captures cut where the work dir log is cut, then the traceback only the console shows: the run must
    show it, or the crash of a live training in this layout would page as a silent stall, or not at all."""
    root = source_layout(captures, tmp_path)
    cut_after(root / folder / capture, marker, OOM)
    cut_after(root / folder / log, marker)
    (root / folder / (log + ".json")).unlink(missing_ok=True)  # the JSON log would carry the run past the cut
    run = runs_of(status(root)[1])[Path(folder).name]
    assert number in (run["epoch"], run["iteration"])
    errors = run["log"]["errors_total"]
    assert errors["cuda_oom"] >= 1 and errors["traceback"] >= 1, errors
