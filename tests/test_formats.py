"""Log formats as plug-ins: every format is found, recognised, parsed and scanned through the Format protocol, so
a format written outside the package (here, in this file) is read like the built-in ones."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator

import pytest
from conftest import DESIGN, REAL

from trainwarden.ingest.files.discover import describe, find_work_dirs
from trainwarden.ingest.files.scan import ScanLimits, scan_file
from trainwarden.ingest.fleet import Fleet
from trainwarden.ingest.reader import RunReader
from trainwarden.judge.policy import DEFAULT_POLICY
from trainwarden.model import Record, TrainRecord
from trainwarden.outputs.status import status_document
from trainwarden.parse.formats import FORMATS, by_name, recognise, text_markers
from trainwarden.parse.formats.base import Found, LineParser, ParseContext, Role, RowParser, WorkDirView, no_timestamp
from trainwarden.parse.stream import LogStream

MMENGINE_HEAD = b"2023/06/16 18:12:33 - mmengine - INFO - \n------------------------------------------------------------\n"
MMCV_HEAD = b"2023-02-08 06:13:38,543 - mmdet - INFO - Environment info:\n"
CONSOLE_HEAD = b"06/16 18:12:33 - mmengine - INFO - \n"


def test_every_format_has_a_unique_name_and_says_what_it_is():
    names = [f.name for f in FORMATS]
    assert len(set(names)) == len(names)
    for fmt in FORMATS:
        assert isinstance(fmt.role, Role) and fmt.kind
        assert by_name(fmt.name) is fmt
    with pytest.raises(KeyError):
        by_name("no-such-format")


@pytest.mark.parametrize(("name", "head", "expected"), [
    ("20230616_181232.log", MMENGINE_HEAD, "mmengine"),
    ("20230616_181232.log", CONSOLE_HEAD, "mmengine"),  # a console-handler copy: MMEngine, no year
    ("20230208_061338.log", MMCV_HEAD, "mmcv"),
    ("20230208_061338.log", b"", "mmcv"),  # nothing written yet: where mmcv puts its logs, mmcv's until it says
    ("20230208_061338.log.json", b'{"env_info": ""}\n', "mmcv_json"),
    ("scalars.json", b'{"lr": 0.01, "step": 1}\n', "scalars"),
    ("20230611_201106.json", b'{"coco/bbox_mAP": 0.003}', "test_dump"),
    ("console.log", b"Traceback (most recent call last):\n", "console"),
    ("train.console.log", b"", "console"),
    ("notes.txt", b"hello\n", None),
    ("epoch_1.pth", b"PK\x03\x04", None),
])
def test_a_file_is_recognised_by_its_name_and_first_bytes(name, head, expected):
    fmt = recognise(name, head)
    assert (fmt.name if fmt is not None else None) == expected


def test_a_flat_mmengine_log_is_told_from_mmcv_by_its_first_line():
    """MMSegmentation's published log sits beside its checkpoints, without the `<ts>/` folder: the name is mmcv's
    layout, the header is MMEngine's, and the header wins (before: the run was "mmcv" until its first line was read,
    and the cold scan looked for mmcv's train lines)."""
    layout = describe(REAL / "mmengine_iter_mmseg_v0.7.3")
    assert layout.framework == "mmengine"
    [session] = layout.sessions
    assert session.files[Role.LOG].format.name == "mmengine"
    layout = describe(REAL / "mmdet2x_retinanet_voc")
    assert layout.framework == "mmcv"
    assert {role: f.format.name for role, f in layout.sessions[0].files.items()} == {Role.LOG: "mmcv",
                                                                                     Role.JSON: "mmcv_json"}


TINY = ScanLimits(small_file_bytes=0, head_max_bytes=1 << 20, chunk_bytes=4096, sample_every_bytes=1024,
                  tail_min_bytes=2048, tail_max_bytes=8192, tail_train_lines=5, max_line_bytes=1 << 16)


@pytest.mark.parametrize(("log", "own", "other"), [
    (REAL / "mmdet2x_retinanet_voc/20230208_061338.log", "mmcv", "mmengine"),
    (REAL / "mmengine_iter_mmseg_v0.7.3/20230616_181232.log", "mmengine", "mmcv"),
])
def test_the_cold_scan_skips_the_train_lines_its_format_names(log, own, other):
    """Each text format names its own train lines; another format's markers skip nothing (every line is parsed)
    and reach the same records: the markers decide the speed, never the result."""
    total = log.read_bytes().count(b"\n")
    by_own = scan_file(log, log.stat().st_size, LogStream(2023), TINY, markers=by_name(own).scan)
    by_other = scan_file(log, log.stat().st_size, LogStream(2023), TINY, markers=by_name(other).scan)
    assert by_own.lines_parsed < by_other.lines_parsed == total
    last_train = [r for r in by_own.records if isinstance(r, TrainRecord)][-1]
    assert last_train == [r for r in by_other.records if isinstance(r, TrainRecord)][-1]


def test_the_markers_of_every_text_format_together_are_the_scan_default():
    union = text_markers()
    for line in ("Epoch(train)  [1][ 50/100]", "Iter(train) [ 50/3000]", "Epoch [1][50/4139]", "Iter [50/3000]"):
        assert union.train.match(line), line
    assert not union.train.match("Epoch(val) [1][50/50]")
    assert re.match(union.skip, b"Epoch(val)  [1][ 50/2252]    eta: 0:03:27")


def _document(reader: RunReader) -> dict:
    snap = reader.state.snapshot()
    return status_document([snap], DEFAULT_POLICY, 2e9)["runs"][0]


# -- a format from outside the package ----------------------------------------------------------------------------
class Detectron2Metrics:
    """Detectron2's `work_dir/metrics.json`: one JSON object a line, `iteration` and the losses; one session."""

    name = "detectron2_metrics"
    kind = "detectron2_metrics"
    role = Role.JSON
    framework = "detectron2"
    scan = None
    line_timestamp = staticmethod(no_timestamp)

    def matches(self, file_name: str, first_bytes: bytes) -> bool:
        return file_name == "metrics.json"

    def find_files(self, work_dir: WorkDirView) -> Iterator[Found]:
        if work_dir.is_file("metrics.json"):
            yield Found("metrics", "metrics.json")

    def new_parser(self, context: ParseContext) -> LineParser:
        def parse(line: str) -> Record | None:
            try:
                row = json.loads(line)
                iteration = int(row["iteration"])
            except (ValueError, KeyError, TypeError):
                return None  # not a row: a half-copied file, a line of something else
            values = {("loss" if k == "total_loss" else k): float(v) for k, v in row.items()
                      if "loss" in k and isinstance(v, (int, float))}
            return TrainRecord(None, None, None, None, iteration, None, values, None)

        return RowParser(parse)


def test_a_format_written_elsewhere_is_found_and_read_like_the_built_in_ones(tmp_path):
    wd = tmp_path / "runs" / "d2_faster_rcnn"
    wd.mkdir(parents=True)
    rows = [{"iteration": i, "total_loss": 2.0 - i / 100, "loss_cls": 0.5, "lr": 0.02} for i in range(19, 200, 20)]
    (wd / "metrics.json").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    formats = (*FORMATS, Detectron2Metrics())
    assert find_work_dirs(tmp_path) == []  # the built-in formats see no run here
    assert find_work_dirs(tmp_path, formats=formats) == [wd]
    reader = RunReader(describe(wd, formats=formats))
    assert reader.layout.framework == "detectron2"
    reader.refresh()
    doc = _document(reader)
    assert doc["framework"] == "detectron2" and doc["log_files"] == [str(wd / "metrics.json")]
    assert doc["iteration"] == 199 and doc["loss"] == pytest.approx(0.01) and doc["losses"] == {"loss_cls": 0.5}
    with (wd / "metrics.json").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"iteration": 219, "total_loss": 0.25, "loss_cls": 0.1}) + "\n")
    assert reader.refresh()  # describes the work dir again with the same formats, and tails the new row
    assert _document(reader)["iteration"] == 219
    fleet = Fleet([tmp_path], formats=formats)  # what `watch` runs, given the formats
    assert fleet.rediscover()
    assert [_document(r)["iteration"] for r in fleet.current_readers()] == [219]


def test_the_first_format_to_claim_a_file_keeps_it(tmp_path):
    """A format added after the built-in ones cannot take their files; one put first can."""
    src = DESIGN / "mmengine_kaist_resumed"
    wd = tmp_path / "run"
    shutil.copytree(src, wd)

    class EveryLog:
        name, kind, role, framework, scan = "every_log", "log", Role.LOG, "other", None
        line_timestamp = staticmethod(no_timestamp)

        def matches(self, file_name, first_bytes):
            return file_name.endswith(".log")

        def find_files(self, work_dir):
            for name in work_dir.names():
                if work_dir.is_dir(name) and work_dir.is_file(f"{name}/{name}.log"):
                    yield Found(name, f"{name}/{name}.log")

        def new_parser(self, context):
            return RowParser(lambda line: None)

    after = describe(wd, formats=(*FORMATS, EveryLog()))
    assert {s.files[Role.LOG].format.name for s in after.sessions} == {"mmengine"}
    first = describe(wd, formats=(EveryLog(), *FORMATS))
    assert {s.files[Role.LOG].format.name for s in first.sessions} == {"every_log"}
    assert first.framework == "other"


def test_a_capture_is_recognised_by_its_content():
    from trainwarden.parse.formats import recognise
    from trainwarden.parse.formats.training_capture import FORMAT as CAPTURE

    mmengine = b"srun: job 1 queued\n12/29 18:56:45 - mmengine - INFO - \n----\nSystem environment:\n"
    coloured = b"\x1b[32m12/29 18:56:45\x1b[0m - mmengine - \x1b[4m\x1b[37mINFO\x1b[0m - Epoch(train) [1][20/40]\n"
    mmcv = b"+ python tools/train.py\n2023-02-08 06:15:07,080 - mmdet - INFO - Environment info:\n"
    for name in ("slurm-3343962.out", "MAE_35_HQFDS-_3343962.log", "nohup.out", "train.txt", "job.stdout"):
        for first in (mmengine, coloured, mmcv):
            assert recognise(name, first) is CAPTURE, (name, first)
    assert recognise("console.log", mmengine).name == "console"  # `trainwarden run`'s capture keeps its format
    assert recognise("20231229_185638.log", coloured).name == "mmengine"  # a session log, not a capture
    for first in (b"", b"2023-02-08 06:15:07,080 - werkzeug - INFO - GET / 200\n", b"Epoch [1][50/4139] loss: 0.5\n",
                  b"0 0.5 0.5 0.1 0.1\n" * 400):
        assert not CAPTURE.matches("slurm-1.out", first)  # the content decides: nothing yet, or not OpenMMLab's
    assert not CAPTURE.matches("model.pth", mmengine) and not CAPTURE.matches("config.py", mmengine)
