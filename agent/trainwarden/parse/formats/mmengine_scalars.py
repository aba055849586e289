"""MMEngine's `work_dir/<ts>/vis_data/scalars.json`: one JSON object a line, the values the text log also holds
(train rows with `lr` and losses, val rows with metrics), without timestamps."""

from __future__ import annotations

from collections.abc import Iterator

from trainwarden.model import Record
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
from trainwarden.parse.jsonlogs import parse_scalars_line


class MMEngineScalars:
    name = "scalars"
    kind = "scalars"
    role = Role.JSON
    framework = "mmengine"
    scan = None
    line_timestamp = staticmethod(no_timestamp)

    def matches(self, file_name: str, first_bytes: bytes) -> bool:
        return file_name == "scalars.json"

    def find_files(self, work_dir: WorkDirView) -> Iterator[Found]:
        for session in session_folders(work_dir):
            path = f"{session}/vis_data/scalars.json"
            if work_dir.is_file(path):
                yield Found(session, path)

    def new_parser(self, context: ParseContext) -> LineParser:
        def parse(line: str) -> Record | None:
            # a val row's `step` is the epoch in epoch-based loops and the iteration otherwise: the config says which
            loop = context.loop()
            return parse_scalars_line(line, None if loop is None else loop == "epoch")

        return RowParser(parse)


FORMAT = MMEngineScalars()
