"""The cold-start scanner must reach the same current state as parsing every line, whatever the chunk sizes,
and nothing random bytes or random splits can do may lose or invent a line (property-based)."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

from conftest import DESIGN, REAL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainwarden.ingest.files.lines import decode_line
from trainwarden.ingest.files.scan import ScanLimits, scan_file
from trainwarden.ingest.files.tail import FileTailer
from trainwarden.judge.policy import DEFAULT_POLICY
from trainwarden.outputs.status import status_document
from trainwarden.parse.stream import LogStream, parse_lines
from trainwarden.state import RunState

NOW = 2e9
TINY = ScanLimits(small_file_bytes=0, head_max_bytes=1 << 20, chunk_bytes=4096, sample_every_bytes=1024,
                  tail_min_bytes=2048, tail_max_bytes=8192, tail_train_lines=5, max_line_bytes=1 << 16)


def _doc_from_records(records) -> dict:
    state = RunState("r", "/w", "mmengine")
    state.apply_all(records, "s")
    snap = state.snapshot()
    return status_document([snap], DEFAULT_POLICY, NOW)["runs"][0]


def _full(path: Path) -> dict:
    lines = path.read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return _doc_from_records(parse_lines((decode_line(raw.rstrip(b"\r"))[0] for raw in lines), 2023))


def _scanned(path: Path, limits: ScanLimits) -> tuple[dict, int]:
    result = scan_file(path, path.stat().st_size, LogStream(2023), limits)
    return _doc_from_records(result.records), result.offset


CURRENT_STATE_KEYS = ("epoch", "epoch_iteration", "iterations_per_epoch", "iteration", "max_iterations", "loss",
                      "losses", "learning_rate", "accuracy_ratio", "expected_completion_timestamp_seconds",
                      "evaluations", "best", "last_saved", "early_stopping", "resumes", "batch_size", "max_epochs",
                      "state", "last_progress_timestamp_seconds")


def assert_same_current_state(full: dict, scanned: dict) -> None:
    for key in CURRENT_STATE_KEYS:
        assert scanned[key] == full[key], key


LOGS = [
    REAL / "mmengine_epoch_rtmdet_coco_v0.7.3/20230611_194513/20230611_194513.log",
    REAL / "mmengine_iter_mmseg_v0.7.3/20230616_181232.log",
    REAL / "mmdet2x_retinanet_voc/20230208_061338.log",
    REAL / "mmdet2x_maskrcnn_coco_balloon/20230208_113819.log",
    DESIGN / "mmengine_kaist_resumed/20251111_180600/20251111_180600.log",
    DESIGN / "windows_gbk_crlf/20251111_180600/20251111_180600.log",
]


def test_scan_matches_full_parse_on_every_fixture():
    for path in LOGS:
        full = _full(path)
        for limits in (TINY, ScanLimits(small_file_bytes=0)):
            scanned, offset = _scanned(path, limits)
            assert offset == path.stat().st_size, path
            assert_same_current_state(full, scanned)


def test_scan_on_a_long_generated_log_parses_few_lines(tmp_path):
    from trainwarden.app.demo import DemoPlan, DemoWriter
    clock = iter(range(1_700_000_000, 1_800_000_000, 7))
    writer = DemoWriter(tmp_path, DemoPlan(max_epochs=3, iterations_per_epoch=20000), clock=lambda: next(clock))
    for _, write in writer.lines():
        write()
    path = writer.log_path
    full = _full(path)
    limits = ScanLimits(small_file_bytes=0, chunk_bytes=64 << 10, sample_every_bytes=16 << 10, tail_min_bytes=16 << 10,
                        tail_train_lines=20)
    result = scan_file(path, path.stat().st_size, LogStream(2023), limits)
    scanned = _doc_from_records(result.records)
    assert_same_current_state(full, scanned)
    assert len(scanned["evaluations"]) == 3
    total_lines = path.read_bytes().count(b"\n")
    assert result.lines_parsed < total_lines / 3  # most train lines were skipped, not parsed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk=st.integers(64, 8192), sample=st.integers(16, 4096), tail=st.integers(64, 8192), which=st.integers(0, 5))
def test_scan_matches_full_parse_for_any_chunking(tmp_path, chunk, sample, tail, which):
    path = LOGS[which]
    limits = ScanLimits(small_file_bytes=0, head_max_bytes=1 << 20, chunk_bytes=chunk, sample_every_bytes=sample,
                        tail_min_bytes=tail, tail_max_bytes=tail * 4, tail_train_lines=3, max_line_bytes=1 << 16)
    scanned, offset = _scanned(path, limits)
    assert offset == path.stat().st_size
    assert_same_current_state(_full(path), scanned)


def test_scan_leaves_a_partial_last_line_to_the_tailer(tmp_path):
    src = LOGS[0].read_bytes()
    path = tmp_path / "x.log"
    path.write_bytes(src + b"2023/06/12 00:13:40 - mmengine - INFO - Epoch(train) [201][1/4]  lr: 1.0e-04  loss: 0.5")
    result = scan_file(path, path.stat().st_size, LogStream(2023), TINY)
    assert result.offset == len(src)
    tailer = FileTailer(path)
    tailer.skip_to(result.offset, result.signature)
    assert tailer.poll().lines == []
    with path.open("ab") as f:
        f.write(b"000\n")
    assert tailer.poll().lines == ["2023/06/12 00:13:40 - mmengine - INFO - Epoch(train) [201][1/4]  lr: 1.0e-04  "
                                   "loss: 0.5000"]


def test_scan_skips_and_counts_over_long_lines(tmp_path):
    src = LOGS[1].read_bytes()
    half = src.index(b"\n", len(src) // 2) + 1
    path = tmp_path / "x.log"
    path.write_bytes(src[:half] + b"y" * 100_000 + b"\n" + src[half:])
    result = scan_file(path, path.stat().st_size, LogStream(2023), replace(TINY, max_line_bytes=50_000))
    assert result.long_lines == 1
    assert_same_current_state(_full(LOGS[1]), _doc_from_records(result.records))


# -- nothing lost, nothing invented ------------------------------------------------------------------------------
line_bytes = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line_bytes, max_size=40), cuts=st.lists(st.integers(0, 2000), max_size=12),
       crlf=st.booleans())
def test_tailer_loses_and_invents_nothing(tmp_path_factory, lines, cuts, crlf):
    path = tmp_path_factory.mktemp("t") / "x.log"
    end = b"\r\n" if crlf else b"\n"
    data = b"".join(line + end for line in lines)
    points = sorted({min(c, len(data)) for c in cuts} | {len(data)})
    tailer = FileTailer(path, chunk_bytes=7)
    got: list[str] = []
    written = 0
    path.write_bytes(b"")
    for p in points:
        with path.open("ab") as f:
            f.write(data[written:p])
        written = p
        got += tailer.poll().lines
    # exactly one \r before the \n is a line end; any other byte is content
    expected = [decode_line(line if crlf or not line.endswith(b"\r") else line[:-1])[0] for line in lines]
    assert got == expected
    assert tailer.offset == len(data) and tailer.pending_bytes == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=120), max_size=30))
def test_parsers_never_raise_on_arbitrary_text(lines):
    prefixed = [random.choice(["", "2023/06/11 19:47:26 - mmengine - INFO - ", "2023-02-08 06:15:07,080 - mmdet - ERROR - ",
                               "06/11 19:47:26 - mmengine - INFO - Epoch(train) "]) + line for line in lines]
    for rec in parse_lines(prefixed, 2023):
        assert rec is not None


SHAPES = [
    "Epoch(train)  [{e}][{i:>4}/1000]  lr: 1.0000e-04  eta: 0:10:00  time: 0.5000  data_time: 0.0100  memory: 100  "
    "loss: {l:.4f}  loss_cls: 0.1000",
    "Epoch(val)  [{e}][ 10/50]    eta: 0:00:10  time: 0.1000  data_time: 0.0100  memory: 100",
    "Epoch(val) [{e}][50/50]    coco/bbox_mAP: {m:.4f}  coco/bbox_mAP_50: 0.5000  data_time: 0.0100  time: 0.1000",
    "Saving checkpoint at {e} epochs",
    "Exp name: something_20230611_194513",
    "Epoch {e}: mAP={m:.4f} (<0.58, 1/2)",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(0, len(SHAPES) - 1), min_size=5, max_size=300), seed=st.integers(0, 10**6),
       chunk=st.integers(128, 4096))
def test_scan_equals_full_parse_on_random_logs(tmp_path_factory, picks, seed, chunk):
    rng = random.Random(seed)
    lines = ["2023/06/11 19:45:15 - mmengine - INFO - Config:",
             "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=9, val_interval=1)",
             "2023/06/11 19:45:16 - mmengine - INFO - " + SHAPES[0].format(e=1, i=1, l=0.9, m=0)]
    t = 0
    epoch, it = 1, 1
    for pick in picks:
        t += rng.randint(0, 30)
        it += 50
        stamp = f"2023/06/{11 + t // 86400:02d} {(t // 3600) % 24:02d}:{(t // 60) % 60:02d}:{t % 60:02d}"
        text = SHAPES[pick].format(e=epoch, i=min(it, 1000), l=rng.uniform(0.1, 2), m=rng.uniform(0, 1))
        lines.append(f"{stamp} - mmengine - INFO - {text}")
        if pick == 2:
            epoch += 1
            it = 1
    path = tmp_path_factory.mktemp("r") / "x.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    limits = ScanLimits(small_file_bytes=0, chunk_bytes=chunk, sample_every_bytes=max(64, chunk // 3),
                        tail_min_bytes=256, tail_max_bytes=1024, tail_train_lines=2)
    scanned, offset = _scanned(path, limits)
    full = _full(path)
    assert offset == path.stat().st_size
    assert_same_current_state(full, scanned)
    for e_full, e_scan in zip(full["evaluations"], scanned["evaluations"], strict=True):
        assert e_full == e_scan
    assert not any(math.isnan(v) for e in scanned["evaluations"] for v in e["metrics"].values() if v is not None)


def test_scan_of_a_console_capture_matches_full_parse(tmp_path):
    """A slurm or tee capture (year-less MMEngine headers, the job's own lines between them) is cold-scanned with
    the capture format's markers and reaches the state of reading every line."""
    import re

    from trainwarden.parse.formats.training_capture import FORMAT as CAPTURE

    for i, path in enumerate(LOGS[:4]):
        body = re.sub(rb"(?m)^\d{4}/(\d\d/\d\d \d\d:\d\d:\d\d - )", rb"\1", path.read_bytes())
        body = body.replace(b"\n", b"\nUserWarning: the job's own line\n", 40)  # prints between logging lines
        capture = tmp_path / f"slurm-{i}.out"
        capture.write_bytes(b"srun: job 1 queued and waiting for resources\n" + body)
        full = _full(capture)
        for limits in (TINY, ScanLimits(small_file_bytes=0)):
            result = scan_file(capture, capture.stat().st_size, LogStream(2023), limits, CAPTURE.scan)
            assert result.offset == capture.stat().st_size
            assert_same_current_state(full, _doc_from_records(result.records))
