"""How a run ends, on real MMEngine 0.10.7 logs of a Runner built in Python (no config dump: the log never states
the run's length), written by tests/fixtures/generated-logs/mmengine_python_runner_v0.10.7/make_logs.py; and old runs
read as history (issue 12, findings 2 and 3)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import REAL, run_cli

from trainwarden.ingest.files.discover import describe
from trainwarden.ingest.reader import RunReader
from trainwarden.judge.judge import judge
from trainwarden.judge.policy import DEFAULT_POLICY
from trainwarden.model import ProcessInfo, Severity

PYTHON_RUNNER = REAL.parent / "generated-logs" / "mmengine_python_runner_v0.10.7"
_SAVING = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) - mmengine - INFO - Saving checkpoint at (\d+) epochs", re.M)
HOUR = 3600.0


def work_dir_of(case: str, tmp_path: Path) -> Path:
    """The fixture's work dir, with the checkpoints its log says were saved (empty files, at the time of each
    `Saving checkpoint` line: the real files are left out of the repository)."""
    work = tmp_path / case
    shutil.copytree(PYTHON_RUNNER / case, work)
    for log in sorted(work.glob("*/*.log")):
        for stamp, epoch in _SAVING.findall(log.read_text(encoding="utf-8")):
            ts = time.mktime(time.strptime(stamp, "%Y/%m/%d %H:%M:%S"))
            checkpoint = work / f"epoch_{epoch}.pth"
            checkpoint.write_bytes(b"")
            os.utime(checkpoint, (ts, ts))
    return work


def read(work: Path, process: ProcessInfo | None = None):
    reader = RunReader(describe(work))
    reader.refresh()
    snap = reader.state.snapshot()
    reader.state.first_seen = snap.last_timestamp  # watched while it trained: never history here
    reader.state.set_process(process)
    return reader.state.snapshot()


def exited(code: int | None) -> ProcessInfo:
    return ProcessInfo(4242, "python", False, "started_by_trainwarden", None, None, code, (4242,))


def pages(j) -> list[str]:
    return [c.alert for c in j.conditions if c.severity == Severity.CRITICAL]


@pytest.mark.parametrize("case", ["normal", "val_every_2"])
@pytest.mark.parametrize("process", [None, exited(None), exited(0)], ids=["no-process", "exit-unknown", "exit-0"])
def test_a_normal_end_of_unstated_length_is_finished(tmp_path, case, process):
    snap = read(work_dir_of(case, tmp_path), process)
    assert snap.config.max_epochs is None and snap.epoch == 5  # no config dump, no config copy that says it
    j = judge(snap, DEFAULT_POLICY, snap.last_timestamp + HOUR)
    assert j.state == "finished", j.state
    assert pages(j) == []
    assert "TrainingFinished" in [c.alert for c in j.conditions]


@pytest.mark.parametrize("process", [None, exited(None), exited(0)], ids=["no-process", "exit-unknown", "exit-0"])
def test_a_run_killed_mid_epoch_still_pages(tmp_path, process):
    snap = read(work_dir_of("killed", tmp_path), process)
    assert (snap.epoch, snap.latest.epoch_iteration) == (3, 20)
    j = judge(snap, DEFAULT_POLICY, snap.last_timestamp + HOUR)
    assert j.state == ("stalled" if process is None else "crashed")
    assert pages(j) == ["TrainingStalled" if process is None else "TrainingProcessExited"]


def test_a_non_zero_exit_is_a_crash_unless_the_log_shows_the_end(tmp_path):
    # after the last checkpoint and validation a crash on the way out lost no training ("exited before training
    # ended" would be false); where the log cannot tell, the exit code decides
    snap = read(work_dir_of("normal", tmp_path), exited(1))
    assert judge(snap, DEFAULT_POLICY, snap.last_timestamp + 60).state == "finished"
    snap = read(work_dir_of("fast", tmp_path), exited(1))
    j = judge(snap, DEFAULT_POLICY, snap.last_timestamp + 60)
    assert j.state == "crashed" and pages(j) == ["TrainingProcessExited"]


@pytest.mark.parametrize("process", [None, exited(None)], ids=["no-process", "exit-unknown"])
def test_an_end_the_log_cannot_tell_is_ended_with_a_warning_never_red(tmp_path, process):
    # epochs of 0.15 s: every eta reads 0:00:00, the last epoch cannot be told from the others
    snap = read(work_dir_of("fast", tmp_path), process)
    j = judge(snap, DEFAULT_POLICY, snap.last_timestamp + HOUR)
    assert j.state == "ended"
    assert pages(j) == []
    warning = [c for c in j.conditions if c.alert == "TrainingEndedUnconfirmed"]
    assert warning and warning[0].severity == Severity.WARNING
    assert "could not tell whether training completed" in warning[0].summary


def test_an_end_the_log_cannot_tell_with_exit_code_0_is_finished(tmp_path):
    snap = read(work_dir_of("fast", tmp_path), exited(0))
    assert judge(snap, DEFAULT_POLICY, snap.last_timestamp + 60).state == "finished"


def test_a_live_run_of_unstated_length_is_running_between_its_lines(tmp_path):
    snap = read(work_dir_of("killed", tmp_path))
    assert judge(snap, DEFAULT_POLICY, snap.last_timestamp + 5).state == "running"


def test_the_config_copy_beside_the_log_states_the_length(tmp_path):
    work = work_dir_of("killed", tmp_path)
    (work / "20261201_114241" / "vis_data" / "config.py").write_text(
        "train_cfg = dict(by_epoch=True, max_epochs=5, val_interval=1)\n", encoding="utf-8")
    snap = read(work, exited(None))
    assert snap.config.max_epochs == 5
    assert judge(snap, DEFAULT_POLICY, snap.last_timestamp + 60).state == "crashed"


# -- history: runs already quiet long before the agent first saw them ------------------------------------------
def history_reader(source: Path, tmp_path: Path) -> RunReader:
    work = tmp_path / source.name
    shutil.copytree(source, work)
    reader = RunReader(describe(work))  # first seen now: the 2023 log is years old
    reader.refresh()
    return reader


@pytest.mark.parametrize("name", ["mmdet2x_retinanet_voc", "mmengine_iter_mmseg_v0.7.3", "mmengine_epoch_rtmdet_coco_v0.7.3"])
def test_an_old_run_is_history_shown_but_never_red(tmp_path, name):
    reader = history_reader(REAL / name, tmp_path)
    snap = reader.state.snapshot()
    j = judge(snap, DEFAULT_POLICY, time.time())
    assert j.history
    assert j.state in ("interrupted", "finished", "ended", "early_stopped")
    assert [c.alert for c in j.conditions if c.severity != Severity.INFO] == []


def test_an_interrupted_old_run_reads_interrupted(tmp_path):
    # the VOC run ends right after `Saving checkpoint at 4 epochs` of 12: interrupted, as its log says
    j = judge(history_reader(REAL / "mmdet2x_retinanet_voc", tmp_path).state.snapshot(), DEFAULT_POLICY, time.time())
    assert j.state == "interrupted"


def test_status_does_not_exit_3_for_history(tmp_path):
    work = tmp_path / "runs"
    for name in ("mmdet2x_retinanet_voc", "mmengine_iter_mmseg_v0.7.3"):
        shutil.copytree(REAL / name, work / name)
    result = run_cli("status", "--json", str(work))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert {r["run"]: (r["history"], r["health"]) for r in runs} == {
        "mmdet2x_retinanet_voc": (True, "green"), "mmengine_iter_mmseg_v0.7.3": (True, "green")}


def test_a_history_run_that_writes_again_is_live_again(tmp_path):
    reader = history_reader(REAL / "mmdet2x_retinanet_voc", tmp_path)
    log = next((tmp_path / "mmdet2x_retinanet_voc").glob("*.log"))
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    with log.open("a", encoding="utf-8") as f:  # the resumed training's next line, as mmcv writes it
        f.write(f"{stamp},000 - mmdet - INFO - Epoch [5][50/4139]\tlr: 1.000e-03, eta: 9:00:00, time: 1.600, "
                "data_time: 0.050, memory: 3000, loss_cls: 0.2, loss_bbox: 0.3, loss: 0.5\n")
    reader.poll()
    j = judge(reader.state.snapshot(), DEFAULT_POLICY, now + 5)
    assert not j.history and j.state == "running"


def test_a_run_that_goes_quiet_while_watched_still_pages(tmp_path):
    reader = history_reader(REAL / "mmdet2x_retinanet_voc", tmp_path)
    snap = reader.state.snapshot()
    reader.state.first_seen = snap.last_timestamp + 60  # the agent saw it a minute after its last line
    snap = reader.state.snapshot()
    j = judge(snap, DEFAULT_POLICY, snap.last_timestamp + 30 * 86400)  # and a month has passed since
    assert not j.history and j.state == "stalled" and pages(j) == ["TrainingStalled"]


def test_a_normal_end_of_unstated_length_is_finished_once_its_last_validation_is_in(tmp_path):
    # while the process is still up (its after-run hooks), right after the last validation
    up = ProcessInfo(4242, "python", True, "started_by_trainwarden", None, None, None, (4242,))
    snap = read(work_dir_of("normal", tmp_path), up)
    assert judge(snap, DEFAULT_POLICY, snap.last_timestamp + 1).state == "finished"


def test_the_last_epoch_before_its_validation_is_not_finished_yet(tmp_path):
    work = work_dir_of("normal", tmp_path)
    log = next(work.glob("*/*.log"))
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    cut = max(i for i, line in enumerate(lines) if "Epoch(train) [5][40/40]" in line)
    log.write_text("".join(lines[: cut + 1]), encoding="utf-8")  # the last train line: checkpoint and val to come
    up = ProcessInfo(4242, "python", True, "started_by_trainwarden", None, None, None, (4242,))
    snap = read(work, up)
    assert judge(snap, DEFAULT_POLICY, snap.last_timestamp + 1).state == "running"
