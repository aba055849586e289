"""A capture of a training's stdout and stderr: Slurm's `slurm-%j.out`, `nohup.out`, `python train.py | tee
train.log`, a scheduler's `JOBNAME_JOBID.log`. It holds MMEngine's or mmcv's logging lines (MMEngine's console
ones carry no year: `12/29 18:56:45 - mmengine - INFO - ...`) among whatever else the job printed: the
scheduler's own lines, warnings, progress bars, and the tracebacks that never reach a work dir's log.

Such a file is told by its content, whatever its name: an OpenMMLab logger's line (`mmengine`, or mmcv's
`mmdet`, `mmseg`, `mmcls`, ...) within its first FIRST_BYTES. Outside any work dir it is a run by itself, read
whole like a session log (discover.py makes it one); inside a work dir with logs of its own it is read for
errors only (console_capture.py). This format finds nothing in a folder: a folder of captures is not one run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from trainwarden.parse.formats import mmcv_text, mmengine_text
from trainwarden.parse.formats.base import Found, LineParser, ParseContext, Role, ScanMarkers, WorkDirView
from trainwarden.parse.formats.text import SESSION_LOG, header_timestamp
from trainwarden.parse.prefix import clean_line, split_header
from trainwarden.parse.stream import LogStream

# Names a capture is given; the content decides. `<ts>.log` is a session log (mmengine_text, mmcv_text).
CAPTURE_NAME = re.compile(r"\.(?:out|log|txt|stdout|stderr)$|^nohup", re.IGNORECASE)
_OPENMMLAB_LOGGER = re.compile(r"^mm[a-z0-9_]*$")


# An OpenMMLab logger's name and a level, wherever in a line (colour codes may surround the level): found in one
# search of the first bytes, then the line is checked whole. Files of other data are refused without a line split.
_LOGGER_AT = re.compile(rb" - (mm[a-z0-9_]*) - (?:\x1b\[[0-9;]*m)*(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")


def capture_framework(first_bytes: bytes) -> str | None:
    """"mmengine" or "mmcv" when a line of `first_bytes` is logged by an OpenMMLab logger; None otherwise."""
    for m in _LOGGER_AT.finditer(first_bytes):
        start = first_bytes.rfind(b"\n", 0, m.start()) + 1
        end = first_bytes.find(b"\n", m.end())
        line = first_bytes[start : end if end != -1 else len(first_bytes)].decode("utf-8", errors="replace")
        header = split_header(clean_line(line), 2000)
        if header is not None and _OPENMMLAB_LOGGER.match(header.logger):
            return "mmengine" if header.logger == "mmengine" else "mmcv"
    return None


def is_capture_name(file_name: str) -> bool:
    return bool(CAPTURE_NAME.search(file_name)) and not SESSION_LOG.match(file_name)


class TrainingCapture:
    name = "capture"
    kind = "log"
    role = Role.LOG
    framework = None  # the lines say: MMEngine's or mmcv's
    scan = ScanMarkers.union([mmengine_text.MARKERS, mmcv_text.MARKERS])  # either framework's train lines

    def matches(self, file_name: str, first_bytes: bytes) -> bool:
        return is_capture_name(file_name) and capture_framework(first_bytes) is not None

    def find_files(self, work_dir: WorkDirView) -> Iterator[Found]:
        return iter(())  # a capture is a run by itself (discover.py), or a console file of a work dir

    def new_parser(self, context: ParseContext) -> LineParser:
        return LogStream(context.default_year, offset=context.clock_offset, written=context.written)

    def line_timestamp(self, line: str, default_year: int) -> float | None:
        return header_timestamp(line, default_year)


FORMAT = TrainingCapture()
