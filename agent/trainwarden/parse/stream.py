"""Turn the decoded lines of one log file into records.

Each logging message starts on a line with a header; the config dump and the environment block continue on
lines without one, so the stream keeps those two blocks until the next header arrives (or `flush()`), and
hands every other line to the pure message and console parsers straight away: a train line is never held back.
"""

from __future__ import annotations

from trainwarden.model import ErrorLine, Record
from trainwarden.parse.configdump import parse_config_dump, parse_environment
from trainwarden.parse.console import ConsoleErrors, parse_console_line
from trainwarden.parse.messages import parse_message
from trainwarden.parse.prefix import YearlessDates, clean_line, split_header

_BLOCK_MAX_LINES = 20000  # a config dump is a few hundred lines; bound the memory of a broken one


class LogStream:
    """Stateful line grouping for one file: the LineParser of every text format. `errors_only` keeps only error
    records (console captures of a run whose .log is also read: the .log is the authority for progress, the
    console for what never reaches it)."""

    def __init__(self, default_year: int, errors_only: bool = False, offset: float = 0.0,
                 written: float | None = None) -> None:
        # `written`: the file's last change, which places year-less console dates in the right year
        self.default_year = YearlessDates(default_year, written)
        self.errors_only = errors_only
        self.offset = offset  # seconds added to every timestamp (prefix.clock_offset)
        self._block: str | None = None  # "config" or "env"
        self._block_ts: float | None = None
        self._block_lines: list[str] = []
        self.dialect: str | None = None  # of the first header seen: "mmengine", "mmcv" or "console"
        self._console = ConsoleErrors()  # lines without a header: a traceback's quoted source is no error

    def feed(self, raw_line: str) -> list[Record]:
        line = clean_line(raw_line)
        header = split_header(line, self.default_year, self.offset)
        if header is None:
            if self._block is not None:
                if len(self._block_lines) < _BLOCK_MAX_LINES:
                    self._block_lines.append(line)
                return []
            err = self._console.feed(line)
            return [err] if err is not None else []
        self._console.interrupt()
        if self.dialect is None:
            self.dialect = header.dialect
        out = self.flush()
        message = header.message
        stripped = message.strip()
        if stripped in ("Config:", "Environment info:", ""):
            self._block = "config" if stripped == "Config:" else "env"
            self._block_ts = header.ts
            return out
        if self.errors_only:
            err = parse_console_line(message, header.ts)
            if err is None and header.level in ("ERROR", "CRITICAL"):
                err = ErrorLine(header.ts, "log_error", message.strip()[:2000])
            if err is not None:
                out.append(err)
            return out
        record = parse_message(message, header.ts)
        if record is None and header.level in ("ERROR", "CRITICAL"):
            record = parse_console_line(message, header.ts) or ErrorLine(header.ts, "log_error", stripped[:2000])
        if record is not None:
            out.append(record)
        return out

    def flush(self) -> list[Record]:
        """End a pending multi-line block (at the next header, or when the file has gone quiet)."""
        if self._block is None:
            return []
        kind, ts, text = self._block, self._block_ts, "\n".join(self._block_lines)
        self._block, self._block_ts, self._block_lines = None, None, []
        if self.errors_only:
            return []
        facts = parse_config_dump(text, ts) if kind == "config" else parse_environment(text, ts)
        return [facts] if facts is not None else []

    @property
    def holding(self) -> bool:
        """A config dump or environment block is held: it ends at the next header, or by `flush()`."""
        return self._block is not None

    @property
    def framework(self) -> str | None:
        """The framework the file's own header format shows: the best evidence there is (a console capture's
        header, without a year, shows none)."""
        return self.dialect if self.dialect in ("mmengine", "mmcv") else None


def parse_lines(lines, default_year: int, errors_only: bool = False) -> list[Record]:
    """All records of a sequence of lines (tests, small files, `analyze`)."""
    stream = LogStream(default_year, errors_only)
    out: list[Record] = []
    for line in lines:
        out.extend(stream.feed(line))
    out.extend(stream.flush())
    return out
