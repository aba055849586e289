"""What the text formats share: MMEngine's and mmcv's logs and console captures all start their logging lines
with the header of prefix.py, and are parsed by stream.LogStream."""

from __future__ import annotations

import re
from collections.abc import Iterator

from trainwarden.parse.formats.base import Found, LineParser, ParseContext, WorkDirView
from trainwarden.parse.prefix import clean_line, split_header
from trainwarden.parse.stream import LogStream

SESSION_LOG = re.compile(r"^(\d{8}_\d{6})\.log$")  # `<ts>.log`: MMEngine's (in `<ts>/`) and mmcv's (in the work dir)


def header_timestamp(line: str, default_year: int) -> float | None:
    header = split_header(clean_line(line), default_year)
    return header.ts if header is not None else None


def first_dialect(first_bytes: bytes) -> str | None:
    """The header dialect of a file's first line ("mmengine", "mmcv", "console"); None without a header."""
    first = first_bytes.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    header = split_header(clean_line(first), 2000)
    return header.dialect if header is not None else None


class SessionLogFormat:
    """A text log named `<ts>.log` and parsed by LogStream (MMEngine's and mmcv's): how a flat one beside the
    checkpoints is found, how its lines are parsed, where its timestamps are. `matches` is each format's own."""

    def matches(self, file_name: str, first_bytes: bytes) -> bool:
        raise NotImplementedError

    def flat_logs(self, work_dir: WorkDirView) -> Iterator[Found]:
        """`<ts>.log` files in the work dir itself that are this format's."""
        for name in work_dir.names():
            m = SESSION_LOG.match(name)
            if m and work_dir.is_file(name) and self.matches(name, work_dir.first_bytes(name)):
                yield Found(m[1], name)

    def new_parser(self, context: ParseContext) -> LineParser:
        return LogStream(context.default_year, offset=context.clock_offset, written=context.written)

    def line_timestamp(self, line: str, default_year: int) -> float | None:
        return header_timestamp(line, default_year)
