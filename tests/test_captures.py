"""Slurm, nohup and tee captures are runs (issue 12, finding 10); a work dir reached twice is one run (finding 5);
`discovery.exclude` leaves folders out (finding 3). The captures are made from the real MMEngine log in
tests/fixtures/real-logs/ as MMEngine's console handler prints it: its header without the year, after a
scheduler's first line, with the traceback that only the console shows at the end."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from trainwarden.ingest.files.discover import describe, find_work_dirs, run_names
from trainwarden.ingest.fleet import Fleet
from trainwarden.parse import prefix

REAL = Path(__file__).parent / "fixtures" / "real-logs"
RTMDET_LOG = REAL / "mmengine_epoch_rtmdet_coco_v0.7.3" / "20230611_194513" / "20230611_194513.log"
MMCV_LOG = REAL / "mmdet2x_retinanet_voc" / "20230208_061338.log"
OOM = (b"Traceback (most recent call last):\n  File \"tools/train.py\", line 133, in <module>\n    main()\n"
       b"torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")


def console_lines(log: Path) -> bytes:
    """The real log as MMEngine's console handler prints it: `06/11 19:45:14 - mmengine - ...`, no year."""
    return re.sub(rb"(?m)^\d{4}/(\d\d/\d\d \d\d:\d\d:\d\d - )", rb"\1", log.read_bytes())


def capture(path: Path, body: bytes, first: bytes = b"srun: job 3343962 queued and waiting for resources\n",
            last: bytes = OOM) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(first + body + last)
    return path


def read(fleet: Fleet):
    fleet.rediscover()
    return {s.run: s for s in fleet.snapshots()}


@pytest.mark.parametrize("name", ["slurm-3343962.out", "MAE_35_HQFDS-_3343962.log", "nohup.out", "train.txt"])
def test_a_capture_is_a_run_by_itself_whatever_its_name(tmp_path, name):
    out = capture(tmp_path / "jobs" / name, console_lines(RTMDET_LOG))
    for root in (out, out.parent):  # `status FILE`, and found in a watched folder by its content
        runs = read(Fleet([root]))
        assert list(runs) == [name]
        run = runs[name]
        assert run.latest.point.epoch == 200 and run.config.max_epochs == 200
        assert len(run.evaluations) == 20 and run.evaluations[-1].metrics["coco/bbox_mAP"] == 0.007
        assert run.framework == "mmengine"
        kinds = [e.kind for e in run.recent_errors]
        assert "cuda_oom" in kinds and "traceback" in kinds  # what only the console shows


def test_an_mmcv_tee_capture_is_a_run(tmp_path):
    out = capture(tmp_path / "train_voc.log", MMCV_LOG.read_bytes(), first=b"+ python tools/train.py\n", last=b"")
    runs = read(Fleet([tmp_path]))
    assert list(runs) == ["train_voc.log"]
    assert runs["train_voc.log"].latest.point.epoch == 4 and runs["train_voc.log"].framework == "mmcv"
    assert len(runs["train_voc.log"].evaluations) == 3
    assert out.exists()


def test_a_folder_of_captures_is_one_run_each(tmp_path):
    body = console_lines(RTMDET_LOG)
    for job in ("slurm-1.out", "slurm-2.out"):
        capture(tmp_path / "jobs" / job, body)
    assert sorted(read(Fleet([tmp_path]))) == ["slurm-1.out", "slurm-2.out"]


def test_files_of_other_programs_are_no_runs(tmp_path):
    # a false run would page TrainingStalled: the content decides, and only an OpenMMLab logger's lines count
    (tmp_path / "app.log").write_text("2023-02-08 06:15:07,080 - werkzeug - INFO - GET / 200\n" * 50, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("Epoch [1][50/4139] lr: 1e-3 loss: 0.5\n", encoding="utf-8")
    (tmp_path / "slurm-9.out").write_text("srun: error: node17: task 0: Exited with exit code 1\n", encoding="utf-8")
    assert find_work_dirs(tmp_path) == []
    assert read(Fleet([tmp_path])) == {}


def test_a_capture_inside_a_work_dir_adds_its_errors_to_the_run(tmp_path):
    wd = tmp_path / "work_dirs" / "rtmdet"
    (wd / "20230611_194513").mkdir(parents=True)
    (wd / "20230611_194513" / "20230611_194513.log").write_bytes(RTMDET_LOG.read_bytes())
    capture(wd / "slurm-3343962.out", console_lines(RTMDET_LOG))
    runs = read(Fleet([tmp_path]))
    assert list(runs) == ["rtmdet"]
    run = runs["rtmdet"]
    assert len(run.evaluations) == 20  # read once: the capture is not a second session
    assert "cuda_oom" in [e.kind for e in run.recent_errors]


def test_a_capture_beside_the_work_dir_it_names_is_that_run(tmp_path):
    # the capture names /mnt/data/.../mmdet/logs_drink (the trainer's machine); here the work dir sits below it
    wd = tmp_path / "mmdet" / "logs_drink"
    (wd / "20230611_194513").mkdir(parents=True)
    (wd / "20230611_194513" / "20230611_194513.log").write_bytes(RTMDET_LOG.read_bytes())
    capture(tmp_path / "slurm-3343962.out", console_lines(RTMDET_LOG))
    runs = read(Fleet([tmp_path]))
    assert list(runs) == ["logs_drink"]
    assert len(runs["logs_drink"].evaluations) == 20
    assert "cuda_oom" in [e.kind for e in runs["logs_drink"].recent_errors]


def test_year_less_dates_take_the_year_of_the_file_and_follow_the_new_year():
    jan_3_2024 = time.mktime((2024, 1, 3, 12, 0, 0, 0, 0, -1))
    years = prefix.YearlessDates(2024, written=jan_3_2024)
    lines = ["12/29 18:56:45 - mmengine - INFO - a", "12/31 23:59:59 - mmengine - INFO - b",
             "01/01 00:00:10 - mmengine - INFO - c", "01/03 11:00:00 - mmengine - INFO - d"]
    stamps = [prefix.split_header(line, years).ts for line in lines]
    assert [time.localtime(ts).tm_year for ts in stamps] == [2023, 2023, 2024, 2024]
    assert stamps == sorted(stamps)
    # a live capture read on Dec 31: January's lines that arrive later are of the next year
    live = prefix.YearlessDates(2023, written=time.mktime((2023, 12, 31, 23, 0, 0, 0, 0, -1)))
    assert [time.localtime(prefix.split_header(line, live).ts).tm_year for line in lines] == [2023, 2023, 2024, 2024]


def test_a_capture_from_december_read_in_january_is_dated_last_year(tmp_path):
    out = capture(tmp_path / "slurm-7.out", console_lines(RTMDET_LOG).replace(b"06/11 ", b"12/29 "))
    jan_2 = time.mktime((time.localtime().tm_year, 1, 2, 12, 0, 0, 0, 0, -1))
    os.utime(out, (jan_2, jan_2))
    run = read(Fleet([out]))["slurm-7.out"]
    assert run.last_timestamp < jan_2  # not eleven months in the future


def test_a_work_dir_reached_through_a_link_is_one_run_named_as_its_folder(tmp_path):
    real = tmp_path / "runs" / "stage2_1_pure_detection"
    (real / "20230611_194513").mkdir(parents=True)
    (real / "20230611_194513" / "20230611_194513.log").write_bytes(RTMDET_LOG.read_bytes())
    (tmp_path / "runs" / "latest").symlink_to(real, target_is_directory=True)
    (real / "loop").symlink_to(tmp_path / "runs", target_is_directory=True)  # a loop: walked once, never again
    (tmp_path / "runs" / "loop2").symlink_to(tmp_path, target_is_directory=True)
    found = find_work_dirs(tmp_path / "runs")
    assert found == [real]
    fleet = Fleet([tmp_path / "runs", tmp_path / "runs" / "latest"])  # watched twice, through the link
    assert list(read(fleet)) == ["stage2_1_pure_detection"]
    assert run_names([tmp_path / "runs" / "latest"]) == {tmp_path / "runs" / "latest": "stage2_1_pure_detection"}


def test_excluded_folders_are_left_out_entirely(tmp_path):
    for name in ("current", "archive/2023/old_run", "scratch_tmp"):
        session = tmp_path / name / "20230611_194513"
        session.mkdir(parents=True)
        (session / "20230611_194513.log").write_bytes(RTMDET_LOG.read_bytes())
    capture(tmp_path / "archive" / "slurm-1.out", console_lines(RTMDET_LOG))
    found = find_work_dirs(tmp_path, exclude=("archive", "*_tmp"))
    assert found == [tmp_path / "current"]
    assert list(read(Fleet([tmp_path], exclude=("*/archive/*", "scratch_*")))) == ["current"]


def test_describe_of_a_capture_is_stable(tmp_path):
    out = capture(tmp_path / "slurm-5.out", console_lines(RTMDET_LOG))
    layout = describe(out)
    assert layout.work_dir == out and [s.log for s in layout.sessions] == [out]
    assert describe(layout.work_dir).sessions[0].log == out  # the reader's next look finds the same file


def test_a_growing_capture_is_followed(tmp_path):
    body = console_lines(RTMDET_LOG)
    cut = body.index(b"Epoch(train) [101]")
    cut = body.rindex(b"\n", 0, cut) + 1
    out = capture(tmp_path / "slurm-11.out", body[:cut], last=b"")
    fleet = Fleet([out])
    assert read(fleet)["slurm-11.out"].latest.point.epoch == 100
    with out.open("ab") as f:
        f.write(body[cut:])
    fleet.poll()
    assert {s.run: s for s in fleet.snapshots()}["slurm-11.out"].latest.point.epoch == 200


def test_discovery_exclude_in_the_config_file(tmp_path):
    from trainwarden.app.config import ConfigError, load_config
    from trainwarden.app.local import local_status

    for name in ("current", "archive/old_run"):
        session = tmp_path / "runs" / name / "20230611_194513"
        session.mkdir(parents=True)
        (session / "20230611_194513.log").write_bytes(RTMDET_LOG.read_bytes())
    config = tmp_path / "trainwarden.yml"
    config.write_text("discovery:\n  exclude: [archive]\n", encoding="utf-8")
    cfg = load_config(config)
    assert cfg.exclude == ("archive",)
    assert [r.run for r in local_status([tmp_path / "runs"], cfg).runs] == ["current"]
    config.write_text("discovery:\n  exclude: {archive: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"discovery\.exclude"):
        load_config(config)


def test_a_coloured_console_capture_is_a_run(tmp_path):
    # MMEngine's console handler colours the time and the level when stdout is a terminal (`script`, `unbuffer`)
    coloured = re.sub(rb"(?m)^(\d\d/\d\d \d\d:\d\d:\d\d) - mmengine - (INFO|WARNING) - ",
                      lambda m: b"\x1b[32m%s\x1b[0m - mmengine - \x1b[4m\x1b[37m%s\x1b[0m - " % (m[1], m[2]),
                      console_lines(RTMDET_LOG))
    assert coloured.count(b"\x1b[32m") > 600
    out = capture(tmp_path / "train.log", coloured)
    run = read(Fleet([tmp_path]))["train.log"]
    assert run.latest.point.epoch == 200 and len(run.evaluations) == 20
    assert out.exists()


@pytest.mark.parametrize("log", [RTMDET_LOG, REAL / "mmengine_iter_mmseg_v0.7.3" / "20230616_181232.log", MMCV_LOG,
                                 REAL / "mmdet2x_maskrcnn_coco_balloon" / "20230208_113819.log"])
def test_a_capture_reads_as_its_work_dir_log_does(tmp_path, log):
    """Progress, evaluations (multi-line tables included), checkpoints saved and the best: a capture of the real log
    gives what the work dir's own log gives."""
    session = tmp_path / "wd" / log.name
    session.parent.mkdir()
    session.write_bytes(log.read_bytes())
    body = console_lines(log) if b" - mmengine - " in log.read_bytes()[:4096] else log.read_bytes()
    out = capture(tmp_path / "jobs" / "slurm-1.out", body, last=b"")
    from_log = read(Fleet([tmp_path / "wd"]))["wd"]
    os.utime(out, (from_log.last_timestamp + 60, from_log.last_timestamp + 60))  # written when the log was: 2023
    from_capture = read(Fleet([tmp_path / "jobs"]))["slurm-1.out"]
    assert from_capture.latest == from_log.latest
    assert [(e.epoch, e.iteration, dict(e.metrics), e.timestamp) for e in from_capture.evaluations] == [
        (e.epoch, e.iteration, dict(e.metrics), e.timestamp) for e in from_log.evaluations]
    assert len(from_log.evaluations) > 0
    assert from_capture.last_saved == from_log.last_saved
    assert from_capture.best_line == from_log.best_line
    assert from_capture.early_stop_log == from_log.early_stop_log


def test_a_capture_read_alone_joins_its_work_dir_when_that_appears(tmp_path):
    capture(tmp_path / "slurm-3343962.out", console_lines(RTMDET_LOG))
    fleet = Fleet([tmp_path])
    assert list(read(fleet)) == ["slurm-3343962.out"]
    wd = tmp_path / "mmdet" / "logs_drink"
    (wd / "20230611_194513").mkdir(parents=True)
    (wd / "20230611_194513" / "20230611_194513.log").write_bytes(RTMDET_LOG.read_bytes())
    runs = read(fleet)
    assert list(runs) == ["logs_drink"]  # one run, not the capture and its work dir side by side
    assert "cuda_oom" in [e.kind for e in runs["logs_drink"].recent_errors]


def test_a_capture_of_a_training_that_failed_early_joins_the_session_it_started(tmp_path):
    """Out of memory while building the model: the capture names no work dir (the hooks never ran), its first line
    comes seconds after the session it started; a capture of another time stays a run of its own."""
    head = console_lines(RTMDET_LOG).split(b"Checkpoints will be saved", 1)[0]
    head = head[: head.rindex(b"\n", 0, len(head) - 1) + 1]
    wd = tmp_path / "work_dirs" / "rtmdet"
    session = wd / "20230611_194513"
    session.mkdir(parents=True)
    (session / "20230611_194513.log").write_bytes(RTMDET_LOG.read_bytes()[:20000])
    written = time.mktime((2023, 6, 11, 19, 46, 0, 0, 0, -1))
    out = capture(tmp_path / "slurm-3343962.out", head)  # first line 06/11 19:45:14, the session 19:45:13
    other = capture(tmp_path / "slurm-100.out", head.replace(b"06/11 19:4", b"06/11 21:4"))
    for path in (out, other):
        os.utime(path, (written + 7200, written + 7200))
    runs = read(Fleet([tmp_path]))
    assert sorted(runs) == ["rtmdet", "slurm-100.out"]
    assert "cuda_oom" in [e.kind for e in runs["rtmdet"].recent_errors]


def test_a_capture_shows_nan_losses_and_an_early_stop(tmp_path):
    # MMEngine's own line shapes (a train line with nan, EarlyStoppingHook's message) after the real log's lines
    tail = (b"06/11 23:59:01 - mmengine - INFO - Epoch(train) [201][4/4]  lr: 1.0003e-04  eta: 0:00:00  time: 13.0387"
            b"  data_time: 12.7226  memory: 7957  loss: nan  loss_cls: nan  loss_bbox: 0.0000\n"
            b"06/11 23:59:30 - mmengine - INFO - the monitored metric did not improve in the last 10 records. "
            b"best score: 0.009. \n")
    out = capture(tmp_path / "slurm-12.out", console_lines(RTMDET_LOG), last=tail)
    run = read(Fleet([out]))["slurm-12.out"]
    assert run.latest.point.epoch == 201 and "loss" in run.latest.point.nonfinite
    assert run.early_stop_log is not None and run.early_stop_log.triggered


LIVE_OOM = Path(__file__).parent / "fixtures" / "mmengine-live" / "cuda_oom_under_run"


def console_errors(text: str) -> list[tuple[str, str]]:
    """(kind, text) of every error the reader's parser of a console capture finds in `text`."""
    from trainwarden.parse.stream import LogStream

    stream = LogStream(2026, errors_only=True)
    found = [r for line in text.splitlines() for r in stream.feed(line)] + stream.flush()
    return [(e.kind, e.text) for e in found]


def test_one_oom_is_one_error_whatever_source_its_traceback_quotes():
    """issue 12 (live check): the real capture of `trainwarden run` around an MMEngine 0.10.7 training whose hook
    raised torch.cuda.OutOfMemoryError: the traceback's quoted source line `raise torch.cuda.OutOfMemoryError(`
    counted as a second cuda_oom. The exception line is the error; the frames and their source are not."""
    text = next(LIVE_OOM.glob("trainwarden-console-*.log")).read_text(encoding="utf-8")
    assert "    raise torch.cuda.OutOfMemoryError(\n" in text
    errors = console_errors(text)
    assert [k for k, _ in errors if k == "cuda_oom"] == ["cuda_oom"], errors
    assert next(t for k, t in errors if k == "cuda_oom").startswith("torch.OutOfMemoryError: CUDA out of memory.")
    assert [k for k, _ in errors].count("traceback") == 1


class OutOfMemoryError(RuntimeError):
    """Named as PyTorch's: what a traceback prints of it is what matters here."""


def _oom_in_a_handler():
    try:
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 7.79 GiB total capacity)")
    except OutOfMemoryError:  # a handler whose own source names the error, as mmdet's AvoidCUDAOOM does
        raise RuntimeError("CUDA error: an illegal memory access was encountered") from None


def _exception_group():
    import builtins

    raise builtins.ExceptionGroup("workers", [OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")])


def _chained():
    try:
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
    except OutOfMemoryError as e:
        raise RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1191, unhandled cuda error") from e


@pytest.mark.parametrize("raise_it, want", [
    (_oom_in_a_handler, ["cuda_error"]),  # the handler's `except OutOfMemoryError:` is quoted source
    # the OOM inside an exception group, at the group's `    | ` margin
    pytest.param(_exception_group, ["cuda_oom"], marks=pytest.mark.skipif(sys.version_info < (3, 11),
                                                                        reason="exception groups: Python 3.11")),
    (_chained, ["cuda_oom", "nccl"]),  # both errors of a chain are errors
])
def test_tracebacks_as_python_prints_them_count_each_error_once(raise_it, want):
    """Real tracebacks (Python's own formatting, carets and exception groups included), bare and as torchrun
    labels every line of a rank: only the exception lines are errors, each once; none is lost."""
    import traceback

    try:
        raise_it()
    except BaseException as e:  # what it raised is the point
        printed = "".join(traceback.format_exception(e))
    assert 'File "' in printed and "    raise " in printed
    for labelled in (printed, "".join(f"[rank1]:{line}\n" for line in printed.splitlines())):
        errors = console_errors(labelled)
        assert sorted(k for k, _ in errors if k != "traceback") == sorted(want), (errors, labelled)
        assert not any("raise " in t or t.startswith("File ") or "except " in t for _, t in errors), errors
