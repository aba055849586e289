"""MMEngine's `work_dir/<ts>/<ts>.json`, written by tools/test.py: one JSON object of the test metrics, no
trailing newline. The text log of the same session holds the same `Epoch(test)` line, so it serves only a session
without one."""

from __future__ import annotations

import re
from collections.abc import Iterator

from trainwarden.parse.formats.base import (
    Found,
    LineParser,
    ParseContext,
    Role,
    RowParser,
    WorkDirView,
    no_timestamp,
    session_folders,
)
from trainwarden.parse.jsonlogs import parse_test_dump

_NAME = re.compile(r"^\d{8}_\d{6}\.json$")


class MMEngineTestDump:
    name = "test_dump"
    kind = "test_dump"
    role = Role.DUMP
    framework = "mmengine"
    scan = None
    line_timestamp = staticmethod(no_timestamp)

    def matches(self, file_name: str, first_bytes: bytes) -> bool:
        return bool(_NAME.match(file_name))

    def find_files(self, work_dir: WorkDirView) -> Iterator[Found]:
        for session in session_folders(work_dir):
            path = f"{session}/{session}.json"
            if work_dir.is_file(path):
                yield Found(session, path)

    def new_parser(self, context: ParseContext) -> LineParser:
        return RowParser(parse_test_dump)  # fed the whole document as one "line"


FORMAT = MMEngineTestDump()
