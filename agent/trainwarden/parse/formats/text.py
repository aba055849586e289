"""What the text formats share: MMEngine's and mmcv's logs and console captures all start their logging lines
with the header of prefix.py, and are parsed by stream.LogStream."""

from __future__ import annotations

import re

from trainwarden.parse.prefix import clean_line, split_header

SESSION_LOG = re.compile(r"^(\d{8}_\d{6})\.log$")  # `<ts>.log`: MMEngine's (in `<ts>/`) and mmcv's (in the work dir)


def header_timestamp(line: str, default_year: int) -> float | None:
    header = split_header(clean_line(line), default_year)
    return header.ts if header is not None else None


def first_dialect(first_bytes: bytes) -> str | None:
    """The header dialect of a file's first line ("mmengine", "mmcv", "console"); None without a header."""
    first = first_bytes.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    header = split_header(clean_line(first), 2000)
    return header.dialect if header is not None else None
