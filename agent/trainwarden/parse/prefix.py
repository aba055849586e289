"""The header every logging line starts with, and its timestamp.

Three shapes (docs/formats.md):
- MMEngine file handler:  ``2023/06/11 19:47:26 - mmengine - INFO - message``
- MMEngine console:       ``06/11 19:47:26 - mmengine - INFO - message`` (no year; often ANSI-coloured)
- mmcv (MMDetection 2.x): ``2023-02-08 06:15:07,080 - mmdet - INFO - message``
MMEngine's ERROR lines add ``<path> - <func> - <lineno> - `` before the message.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache

_PREFIX = re.compile(
    r"(?:(?P<y>\d{4})[/-])?(?P<mo>\d\d)[/-](?P<d>\d\d) (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:,(?P<ms>\d{3}))?"
    r" - (?P<logger>\S+) - (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) - "
)
_ERROR_LOCATION = re.compile(r".+? - \w+ - \d+ - ")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True, slots=True)
class Header:
    ts: float | None
    logger: str
    level: str
    message: str
    dialect: str  # "mmengine" (slashes), "mmcv" (dashes and milliseconds) or "console" (no year)


def clean_line(line: str) -> str:
    """Drop line ends, ANSI colours and carriage-return progress redraws (tqdm in console captures)."""
    line = line.rstrip("\r\n")
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    if "\r" in line:
        parts = [p for p in line.split("\r") if p.strip()]
        line = parts[-1] if parts else ""
    return line


@lru_cache(maxsize=256)
def _hour_start(year: int, month: int, day: int, hour: int) -> float:
    # mktime once per distinct hour: strptime on every line would dominate a cold scan.
    return time.mktime((year, month, day, hour, 0, 0, 0, 0, -1))


def local_timestamp(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float | None:
    try:
        return _hour_start(year, month, day, hour) + minute * 60 + second
    except (OverflowError, ValueError):
        return None


YEAR_AHEAD_SLACK = 2 * 86400.0  # a date this far after its file's last change is last year's (zones, clock skew)


class YearlessDates:
    """The year of the headers that do not say it (MMEngine's console, `12/29 18:56:45`), for one file read in
    order. The first such date takes the year of the file's last change (`written`), or the year before when that
    would put it after the change (a capture from December read in January); the year then goes up each time the
    month falls back (December -> January), as a file written in time order does only at a new year."""

    def __init__(self, default_year: int, written: float | None = None) -> None:
        self.default_year = default_year
        self.written = written
        self.year: int | None = None
        self._month = 0

    def year_for(self, month: int, day: int, hour: int) -> int:
        if self.year is None:
            year = self.default_year
            if self.written is not None:
                ts = local_timestamp(year, month, day, hour, 0, 0)
                if ts is not None and ts > self.written + YEAR_AHEAD_SLACK:
                    year -= 1
            self.year = year
        elif month < self._month - 6:  # December's lines, then January's: a new year
            self.year += 1
        self._month = month
        return self.year


def split_header(line: str, default_year: int | YearlessDates, offset: float = 0.0) -> Header | None:
    """The header of a logging line, or None for a continuation line (tables, tracebacks, config text).
    `default_year`: the year of a header without one (a YearlessDates follows a file's new years).
    `offset` is added to the line's local time (the trainer's clock zone differs from ours, see clock_offset)."""
    m = _PREFIX.match(line)
    if m is None:
        return None
    year = m["y"]
    month, day, hour = int(m["mo"]), int(m["d"]), int(m["h"])
    if year:
        line_year = int(year)
    elif isinstance(default_year, YearlessDates):
        line_year = default_year.year_for(month, day, hour)
    else:
        line_year = default_year
    ts = local_timestamp(line_year, month, day, hour, int(m["mi"]), int(m["s"]))
    if ts is not None and m["ms"]:
        ts += int(m["ms"]) / 1000.0
    if ts is not None:
        ts += offset
    message = line[m.end() :]
    level = m["level"]
    if level in ("ERROR", "CRITICAL"):
        loc = _ERROR_LOCATION.match(message)
        # MMEngine's ERROR format puts the source location first; it always holds a path separator.
        if loc is not None and ("/" in loc.group(0) or "\\" in loc.group(0)):
            message = message[loc.end() :]
    dialect = "console" if not year else ("mmcv" if m["ms"] else "mmengine")
    return Header(ts=ts, logger=m["logger"], level=level, message=message, dialect=dialect)


def prefix_length(line: str) -> int | None:
    """Length of the header of a logging line (used by the cold-start scanner to skip train lines)."""
    m = _PREFIX.match(line)
    return m.end() if m else None


def clock_offset(last_line_ts: float | None, written: float, now: float) -> float:
    """Seconds to add to a log's timestamps so they mean the time here.

    Log lines carry the trainer's local time without a zone. When the agent runs in another zone (a container on
    UTC reading a UTC+8 trainer's logs), the lines seem to come from the future: their file was last modified at
    `written` (a true instant) while its last line says a later time. Only that direction is unambiguous (lines
    that seem old may just be old: a copied or stopped log), so only a last line at least half an hour ahead of
    its file's modification, and at most 14 hours (the widest zone difference), is corrected, rounded to the
    quarter hour as zones are. A zone behind ours must be set with the TZ environment variable.
    """
    if last_line_ts is None:
        return 0.0
    ahead = last_line_ts - min(written, now)
    if ahead < 1800 or ahead > 14 * 3600 + 900:
        return 0.0
    return -round(ahead / 900.0) * 900.0
