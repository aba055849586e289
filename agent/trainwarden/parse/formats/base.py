"""What a log format is to the rest of the agent: the `Format` protocol and the small types around it.

Discovery (ingest/files/discover.py), the reader (ingest/reader.py) and the cold-start scan (ingest/files/scan.py)
know formats only through this module; docs/formats.md says how to add one. A format stays pure: it sees a work
dir through a `WorkDirView` that discovery fills, and turns lines into records without I/O or a clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from trainwarden.model import Record

# The session names MMEngine and mmcv give: the start time, which sorts in time order.
SESSION_ID = re.compile(r"^\d{8}_\d{6}$")
FIRST_BYTES = 8192  # what `matches` sees of a file: its first line's header, and a capture's first logged lines


class Role(Enum):
    """How the reader treats a format's files (a fixed vocabulary: formats are the open part, roles are not)."""

    LOG = "log"  # a session's text log, the authority: cold-scanned when the format has scan markers, then tailed
    JSON = "json"  # a session's JSON-lines file: read only when the session has no LOG file
    DUMP = "dump"  # one document summing up a session (a test's metrics): read whole again when it changes, only
    #                when the session has no LOG file
    CONSOLE = "console"  # a capture of the run's stdout and stderr: a file of the whole run; lines without a
    #                      timestamp are dated by the file's last change


@dataclass(frozen=True)
class Found:
    """A file a format reads, as its `find_files` names it."""

    session: str | None  # the session it belongs to (sorts in time order); None: a file of the whole run
    path: str  # relative to the work dir, folders separated by "/"


class WorkDirView(Protocol):
    """One work dir as discovery lists it: what a format's `find_files` may look at, and nothing else."""

    def names(self) -> Sequence[str]:
        """Names of the work dir's own entries (files and folders)."""
        ...

    def names_in(self, folder: str) -> Sequence[str]:
        """Names of the entries of one of the work dir's folders (`logs`); empty when it cannot be listed."""
        ...

    def is_dir(self, path: str) -> bool: ...

    def is_file(self, path: str) -> bool: ...

    def first_bytes(self, path: str) -> bytes:
        """Up to FIRST_BYTES bytes from the start of a file; b"" when it is empty or cannot be read."""
        ...


class LineParser(Protocol):
    """Turns the lines of one file, in order, into records. One per file: it may keep state between lines."""

    def feed(self, line: str) -> list[Record]:
        """Records that `line` (decoded, without its line end) completes."""
        ...

    def flush(self) -> list[Record]:
        """Records of lines held back (a multi-line block): the file went quiet, or ended."""
        ...

    @property
    def holding(self) -> bool:
        """Lines are held back: `flush()` when the file goes quiet."""
        ...

    @property
    def framework(self) -> str | None:
        """The framework the lines themselves show ("mmengine", "mmcv"), once they have shown it."""
        ...


def _loop_unknown() -> str | None:
    return None


@dataclass(frozen=True)
class ParseContext:
    """What a parser may know besides its lines. Built by the reader for each file."""

    default_year: int  # for headers without a year (MMEngine console captures): the file's year
    clock_offset: float = 0.0  # seconds added to every timestamp (the trainer's clock zone; prefix.clock_offset)
    loop: Callable[[], str | None] = _loop_unknown  # the run's training loop as known so far: "epoch", "iteration"
    written: float | None = None  # the file's last change when it was opened: the year of year-less dates


@dataclass(frozen=True)
class ScanMarkers:
    """The lines the cold-start scan of a large text log may skip: the point of the scan is that it parses only
    the lines that are not these.

    All train lines of one file share a header of one width (`header_width` of the first train line) followed by
    the same words (what `train` matches there: the scan's key). `skip`, a bytes pattern tried at the same place,
    names other lines of no interest (validation progress). A line neither matches is parsed; so are a sparse
    sample of train lines and the train line before each evaluation (it gives the evaluation its iteration).
    """

    header_width: Callable[[str], int | None]  # the length of a line's header; None: the line has none
    train: re.Pattern[str]  # the words a train line starts with, matched right after its header
    skip: bytes = b""  # a bytes regular expression of other skippable messages, matched right after the header

    @staticmethod
    def union(markers: Iterable[ScanMarkers]) -> ScanMarkers:
        """Markers that recognise the train lines of any of `markers` (which must measure headers alike)."""
        markers = list(markers)
        widths = {m.header_width for m in markers}
        if len(widths) != 1:
            raise ValueError("scan markers measure their headers differently: no union")
        train = re.compile("|".join(m.train.pattern for m in markers))
        skip = b"|".join(m.skip for m in markers if m.skip)
        return ScanMarkers(widths.pop(), train, skip)


class Format(Protocol):
    """One log format: how its files are found in a work dir, recognised, parsed and scanned."""

    name: str  # unique; also SessionFiles.json_kind for a JSON format
    kind: str  # what the status document's `files` calls its files: "log", "console", or the JSON format's name
    role: Role
    framework: str | None  # the framework its files show ("mmengine", "mmcv"); None when they say nothing
    scan: ScanMarkers | None  # text formats: what the cold-start scan may skip; None: read every line

    def matches(self, file_name: str, first_bytes: bytes) -> bool:
        """Whether a file of this name starting with these bytes is of this format (first_bytes may be b"": a file
        just created)."""
        ...

    def find_files(self, work_dir: WorkDirView) -> Iterator[Found]:
        """The files of this format in one work dir, each with its session: this says how sessions are laid out.
        Lazy: discovery stops at the first one when it only asks whether a folder is a work dir."""
        ...

    def new_parser(self, context: ParseContext) -> LineParser: ...

    def line_timestamp(self, line: str, default_year: int) -> float | None:
        """The time a line was written as it says it (local time of the trainer), None when it does not say."""
        ...


@dataclass
class RowParser:
    """A LineParser for formats of one record a line at most (JSON lines): no state, nothing held back."""

    parse: Callable[[str], Record | None]
    holding: bool = field(default=False, init=False)
    framework: str | None = field(default=None, init=False)

    def feed(self, line: str) -> list[Record]:
        rec = self.parse(line)
        return [rec] if rec is not None else []

    def flush(self) -> list[Record]:
        return []


def session_folders(work_dir: WorkDirView) -> Iterator[str]:
    """MMEngine's layout: each session is a folder `<ts>/` of the work dir."""
    for name in work_dir.names():
        if SESSION_ID.match(name) and work_dir.is_dir(name):
            yield name


def no_timestamp(line: str, default_year: int) -> float | None:
    return None
