"""Run discovery on the layouts MMEngine and mmcv write, built in temporary folders."""

from __future__ import annotations

import os
import shutil

import pytest

from trainwarden.ingest.files.discover import describe, find_work_dirs, list_checkpoints, run_names
from trainwarden.ingest.fleet import Fleet


def touch(path, data=b"x\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def work_dirs(tmp_path):
    root = tmp_path / "work_dirs"
    a = root / "stage2_1_pure_detection"
    touch(a / "20251111_180600" / "20251111_180600.log")
    touch(a / "20251111_180600" / "vis_data" / "scalars.json")
    touch(a / "20251112_090000" / "20251112_090000.log")
    touch(a / "stage2_1_kaist_detonly_pure_detection.py")
    touch(a / "epoch_1.pth")
    touch(a / "best_coco" / "bbox_mAP_epoch_1.pth")
    (a / "last_checkpoint").write_text(str(a / "epoch_1.pth"), encoding="utf-8")
    b = root / "plan_b" / "stage2_1_progressive_macl"  # one level deeper
    touch(b / "20251113_100000" / "20251113_100000.log")
    c = root / "mmdet2_run"
    touch(c / "20230208_061338.log")
    touch(c / "20230208_061338.log.json")
    touch(c / "20230209_080000.log")  # a resume writes a second log beside the first
    touch(c / "epoch_3.pth")
    (root / "notes").mkdir()
    touch(root / "notes" / "readme.txt")
    return root


def test_folder_of_work_dirs(work_dirs):
    found = find_work_dirs(work_dirs)
    assert [p.name for p in found] == ["mmdet2_run", "stage2_1_progressive_macl", "stage2_1_pure_detection"]


def test_a_work_dir_and_a_session_folder_both_mean_the_run(work_dirs):
    wd = work_dirs / "stage2_1_pure_detection"
    assert find_work_dirs(wd) == [wd]
    assert find_work_dirs(wd / "20251111_180600") == [wd]  # the guide names the <ts>/ folder as the work dir


def test_mmengine_sessions_fold_in_time_order(work_dirs):
    layout = describe(work_dirs / "stage2_1_pure_detection")
    assert layout.framework == "mmengine"
    assert [s.id for s in layout.sessions] == ["20251111_180600", "20251112_090000"]
    first = layout.sessions[0]
    assert first.log.name == "20251111_180600.log" and first.json.name == "scalars.json" and first.json_kind == "scalars"
    assert layout.config_file.name == "stage2_1_kaist_detonly_pure_detection.py"


def test_mmcv_sessions(work_dirs):
    layout = describe(work_dirs / "mmdet2_run")
    assert layout.framework == "mmcv"
    assert [(s.id, s.log.name, s.json.name if s.json else None) for s in layout.sessions] == [
        ("20230208_061338", "20230208_061338.log", "20230208_061338.log.json"),
        ("20230209_080000", "20230209_080000.log", None),
    ]


def test_checkpoints_include_the_old_best_subfolder_and_last_checkpoint(work_dirs):
    wd = work_dirs / "stage2_1_pure_detection"
    files, last = list_checkpoints(wd)
    by_name = {c["file"]: c for c in files}
    assert set(by_name) == {"epoch_1.pth", "best_coco/bbox_mAP_epoch_1.pth"}
    assert by_name["epoch_1.pth"]["epoch"] == 1 and not by_name["epoch_1.pth"]["best"]
    assert by_name["best_coco/bbox_mAP_epoch_1.pth"]["best"] and by_name["best_coco/bbox_mAP_epoch_1.pth"]["epoch"] == 1
    assert last == str(wd / "epoch_1.pth")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks on this platform")
def test_latest_link_and_iteration_checkpoints(tmp_path):
    wd = tmp_path / "run"
    touch(wd / "20230208_061338.log")
    touch(wd / "iter_1500.pth", b"x" * 10)
    os.symlink("iter_1500.pth", wd / "latest.pth")
    os.symlink("missing.pth", wd / "dangling.pth")  # a broken link is not a checkpoint
    files, _ = list_checkpoints(wd)
    by_name = {c["file"]: c for c in files}
    assert set(by_name) == {"iter_1500.pth", "latest.pth"}
    assert by_name["latest.pth"]["iteration"] == 1500 and by_name["latest.pth"]["link"]


def test_checkpoints_in_the_logged_out_dir(tmp_path):
    wd = tmp_path / "run"
    touch(wd / "20230208_061338.log")
    out = tmp_path / "elsewhere"
    touch(out / "epoch_7.pth")
    files, _ = list_checkpoints(wd, out)
    assert [c["file"] for c in files] == ["epoch_7.pth"]


def test_names_stay_unique(tmp_path):
    a, b = tmp_path / "x" / "exp", tmp_path / "y" / "exp"
    names = run_names([a, b, tmp_path / "z" / "other"])
    assert names[a] == "x/exp" and names[b] == "y/exp" and names[tmp_path / "z" / "other"] == "other"


def test_nothing_to_find(tmp_path):
    assert find_work_dirs(tmp_path) == []
    assert find_work_dirs(tmp_path / "missing") == []


def test_a_deleted_work_dir_is_forgotten_but_a_missing_root_drops_nothing(tmp_path):
    root = tmp_path / "work_dirs"
    for name in ("a", "b"):
        session = root / name / "20251111_180600"
        session.mkdir(parents=True)
        (session / "20251111_180600.log").write_text(
            "2025/11/11 18:06:00 - mmengine - INFO - Epoch(train)  [1][ 50/100]  lr: 1.0e-04  eta: 0:01:00  "
            "time: 0.5  data_time: 0.01  memory: 100  loss: 0.3\n", encoding="utf-8")
    fleet = Fleet([root])
    fleet.rediscover()
    assert sorted(r.state.name for r in fleet.current_readers()) == ["a", "b"]
    shutil.rmtree(root / "b")
    assert fleet.rediscover() is True
    assert [r.state.name for r in fleet.current_readers()] == ["a"]
    root.rename(tmp_path / "away")  # the whole watched folder gone (a network mount away): nothing is dropped
    fleet.rediscover()
    assert [r.state.name for r in fleet.current_readers()] == ["a"]


SESSION = "20261201_121647"
FIRST_LINE = b"2026/12/01 12:16:47 - mmengine - INFO - \n"  # MMEngine's first line: the environment block's


class _TrainingStartsDuringTheWalk:
    """A format that finds nothing, and whose n-th look at the work dir is the moment MMEngine creates the session's
    log: the orders a training that starts while the walk runs can meet it in (`<ts>/` made; the work dir listed
    and looked at; `<ts>/<ts>.log` created; `<ts>/` listed), made deterministic. Asked last, after the real formats,
    so that they have looked at the work dir without the log."""

    name = kind = "starts_during_the_walk"
    role = None
    framework = None
    scan = None

    def __init__(self, work_dir, at_look):
        self.log = work_dir / SESSION / f"{SESSION}.log"
        self.at_look = at_look
        self.looks = 0

    def matches(self, file_name, first_bytes):
        return False

    def find_files(self, work_dir):
        if SESSION in work_dir.names():
            self.looks += 1
            if self.looks == self.at_look:
                self.log.write_bytes(FIRST_LINE)
        return iter(())

    def new_parser(self, context):
        raise AssertionError("never reads a file")

    def line_timestamp(self, line, default_year):
        return None


@pytest.mark.parametrize("at_look", [1, 2])
def test_a_session_folder_is_never_a_run_of_its_own(tmp_path, at_look):
    """issue 12 (live check): MMEngine's `killed/<ts>/`, met by the walk before its work dir showed the session (the
    log created between the look at the work dir and the listing of `<ts>/`), was a run named `<ts>` beside
    `killed`, and both paged ProcessExited. Whenever the log appears, no walk finds `<ts>`, and `killed` is found."""
    from trainwarden.parse.formats import FORMATS

    root = tmp_path / "work_dirs"
    wd = root / "killed"
    for start in (root, wd):  # `watch work_dirs`, and `run`, which watches the work dir itself
        (wd / SESSION).mkdir(parents=True)  # MMEngine's mkdir of the session folder, before its logger opens the log
        formats = (*FORMATS, _TrainingStartsDuringTheWalk(wd, at_look))
        walks = [find_work_dirs(start, formats=formats) for _ in range(3)]
        assert all(found in ([], [wd]) for found in walks) and walks[-1] == [wd], (start, walks)
        shutil.rmtree(wd / SESSION)
        formats = (*FORMATS, _TrainingStartsDuringTheWalk(wd, at_look))
        fleet = Fleet([start], formats=formats)
        (wd / SESSION).mkdir()
        for _ in range(3):
            fleet.rediscover()
            assert [r.state.name for r in fleet.current_readers()] in ([], ["killed"]), start
        assert [r.state.name for r in fleet.current_readers()] == ["killed"]
        shutil.rmtree(wd / SESSION)
    # the early state itself (the log, no vis_data yet), whichever way it is reached
    touch(wd / SESSION / f"{SESSION}.log", FIRST_LINE)
    for path in (root, wd, wd / SESSION, wd / SESSION / f"{SESSION}.log"):
        assert find_work_dirs(path) == [wd], path


def test_a_folder_named_as_a_time_is_a_run_when_its_log_is_not_its_session(tmp_path):
    """What stays a run of its own: an mmcv work dir named by a time (`--work-dir work_dirs/$(date ...)`) whose
    logs are named by their own later start, and an MMEngine work dir named so."""
    mmcv = tmp_path / "work_dirs" / "20230208_061000"
    touch(mmcv / "20230208_061338.log", b"2023-02-08 06:13:38,123 - mmdet - INFO - Environment info:\n")
    mmengine = tmp_path / "work_dirs" / "20230609_081000"
    touch(mmengine / "20230609_081929" / "20230609_081929.log", FIRST_LINE)
    assert find_work_dirs(tmp_path / "work_dirs") == [mmcv, mmengine]
    assert find_work_dirs(mmcv) == [mmcv] and find_work_dirs(mmengine / "20230609_081929") == [mmengine]


def test_the_empty_config_dump_of_a_runner_built_in_python_is_not_the_config(tmp_path):
    """A Runner built in Python has no config, and MMEngine dumps it anyway: an empty `<ts>.py` (one newline) beside
    the session. That file is not the run's config (status showed `config: 20261201_114521.py`); a real dump is."""
    from conftest import FIXTURES

    for name in ("healthy_in_python", "loss_nan", "killed_mid_epoch"):  # real MMEngine 0.10.7 work dirs
        work_dir = FIXTURES / "mmengine-live" / name
        assert [p.read_bytes() for p in work_dir.glob("*.py")] == [b"\n"], name
        assert describe(work_dir).config_file is None, name
    assert describe(FIXTURES / "mmengine-live" / "healthy_from_cfg").config_file.name == "scripted_config.py"
    wd = tmp_path / "run"
    touch(wd / "20261201_114521" / "20261201_114521.log", FIRST_LINE)
    touch(wd / "20261201_114521.py", b"\n")
    touch(wd / "20261201_120000.py", b"model = dict(type='X')\n")  # a later session built from a config
    assert describe(wd).config_file.name == "20261201_120000.py"
