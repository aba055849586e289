"""mmcv's `work_dir/<ts>.log.json`, beside the text log of the same session: line 1 holds env_info and the
config text, then one JSON object a train or val row, without timestamps."""

from __future__ import annotations

import re
from collections.abc import Iterator

from trainwarden.parse.formats.base import Found, LineParser, ParseContext, Role, RowParser, WorkDirView, no_timestamp
from trainwarden.parse.jsonlogs import parse_mmcv_json_line

_NAME = re.compile(r"^(\d{8}_\d{6})\.log\.json$")


class MMCVJson:
    name = "mmcv_json"
    kind = "mmcv_json"
    role = Role.JSON
    framework = "mmcv"
    scan = None
    line_timestamp = staticmethod(no_timestamp)

    def matches(self, file_name: str, first_bytes: bytes) -> bool:
        return bool(_NAME.match(file_name))

    def find_files(self, work_dir: WorkDirView) -> Iterator[Found]:
        for name in work_dir.names():
            m = _NAME.match(name)
            if m and work_dir.is_file(name):
                yield Found(m[1], name)

    def new_parser(self, context: ParseContext) -> LineParser:
        return RowParser(parse_mmcv_json_line)


FORMAT = MMCVJson()
