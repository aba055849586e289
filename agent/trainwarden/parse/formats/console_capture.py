"""A capture of the training's stdout and stderr in the work dir (`trainwarden run` writes `console.log`; nohup,
tee and slurm write others, found by their content: training_capture.py): where CUDA OOM, tracebacks and NCCL
errors land, which never reach the .log. Read for errors only: the text log is the authority for progress. Files
named elsewhere come with `--console FILE`."""

from __future__ import annotations

import re
from collections.abc import Iterator

from trainwarden.parse.formats.base import SESSION_ID, Found, LineParser, ParseContext, Role, WorkDirView
from trainwarden.parse.formats.text import SESSION_LOG, header_timestamp
from trainwarden.parse.formats.training_capture import capture_framework, is_capture_name
from trainwarden.parse.stream import LogStream

_NAME = re.compile(r"console.*\.(?:log|txt|out)$|\.console\.log$", re.IGNORECASE)


class ConsoleCapture:
    name = "console"
    kind = "console"
    role = Role.CONSOLE
    framework = None
    scan = None  # errors sit anywhere, and a capture is read whole: nothing to skip

    def matches(self, file_name: str, first_bytes: bytes) -> bool:
        return bool(_NAME.search(file_name))

    def find_files(self, work_dir: WorkDirView) -> Iterator[Found]:
        names = work_dir.names()
        # Other captures are told by their content, and only in a folder with session logs of its own: elsewhere a
        # capture is a run by itself (discover.py), and a folder of data is not read file by file.
        sessions = any(SESSION_ID.match(name) or SESSION_LOG.match(name) for name in names)
        for name in names:
            if _NAME.search(name) and work_dir.is_file(name):
                yield Found(None, name)
            elif (sessions and is_capture_name(name) and work_dir.is_file(name)
                  and capture_framework(work_dir.first_bytes(name)) is not None):
                yield Found(None, name)  # a nohup, tee or slurm capture of OpenMMLab lines

    def new_parser(self, context: ParseContext) -> LineParser:
        return LogStream(context.default_year, errors_only=True, offset=context.clock_offset,
                         written=context.written)

    def line_timestamp(self, line: str, default_year: int) -> float | None:
        return header_timestamp(line, default_year)


FORMAT = ConsoleCapture()
