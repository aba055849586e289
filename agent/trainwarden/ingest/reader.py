"""Read one run's files into its RunState: a cold-start scan of each file, then incremental tailing.

No threads here: the agent calls `refresh()` (layout changes) and `poll()` (new bytes) from its own worker, and
`status` calls `refresh()` once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainwarden.ingest.files.discover import RunLayout, describe, list_checkpoints
from trainwarden.ingest.files.lines import last_lines
from trainwarden.ingest.files.scan import scan_file
from trainwarden.ingest.files.tail import FileTailer, TailBatch
from trainwarden.model import ErrorLine, Record
from trainwarden.parse.jsonlogs import parse_mmcv_json_line, parse_scalars_line, parse_test_dump
from trainwarden.parse.prefix import clean_line, clock_offset, split_header
from trainwarden.parse.stream import LogStream
from trainwarden.state import RunState

MAX_TEST_DUMP_BYTES = 1 << 20
log = logging.getLogger("trainwarden.reader")


@dataclass
class _Source:
    path: Path
    kind: str  # "log", "console", "scalars", "mmcv_json"
    session: str
    tailer: FileTailer
    stream: LogStream | None
    started: bool = False


def _year_of(path: Path) -> int:
    try:
        return time.localtime(path.stat().st_mtime).tm_year
    except OSError:
        return time.localtime().tm_year


def _zone_offset(path: Path) -> float:
    """The trainer's clock zone against ours, from a log that is being written now (prefix.clock_offset)."""
    try:
        written = path.stat().st_mtime
        lines = last_lines(path, 20)
    except OSError:
        return 0.0
    year = time.localtime(written).tm_year
    for line in reversed(lines):
        header = split_header(clean_line(line), year)
        if header is not None and header.ts is not None:
            offset = clock_offset(header.ts, written, time.time())
            if offset:
                log.warning("%s: its lines are %.2f h ahead of this machine's clock (another time zone): read "
                            "%+.2f h", path, -offset / 3600, offset / 3600)
            return offset
    return 0.0


class RunReader:
    def __init__(self, layout: RunLayout, cold_scan: bool = True) -> None:
        self.layout = layout
        self.state = RunState(layout.name, str(layout.work_dir), layout.framework)
        self.cold_scan = cold_scan
        self._sources: dict[Path, _Source] = {}
        self._source_names: set[str] = set()  # the same paths as text: `watches` runs for every file event
        self._test_dumps: dict[Path, float] = {}
        self._extra_consoles: list[Path] = []

    @property
    def work_dir(self) -> Path:
        return self.layout.work_dir

    def add_console(self, path: Path) -> None:
        """A console capture made some other way (nohup, tee, slurm): read for errors only."""
        self._extra_consoles.append(Path(path))

    # -- layout ---------------------------------------------------------------------------------------------
    def refresh(self, layout: RunLayout | None = None) -> bool:
        """Pick up new sessions and files, read everything new, rescan checkpoints. True if anything changed."""
        self.layout = layout or describe(self.layout.work_dir, self.layout.name)
        st = self.state
        with st.lock:
            if st.framework == "unknown":
                st.framework = self.layout.framework
            st.config_file = self.layout.config_file.name if self.layout.config_file else None
        for session in self.layout.sessions:
            if session.log is not None:
                self._ensure(session.log, "log", session.id)
            elif session.json is not None:
                self._ensure(session.json, session.json_kind or "scalars", session.id)
            if session.test_dump is not None:
                self._read_test_dump(session.test_dump, session.id)
        for console in [*self.layout.consoles, *self._extra_consoles]:
            self._ensure(console, "console", console.name)
        changed = self.poll()
        self.rescan_checkpoints()
        return changed

    def _ensure(self, path: Path, kind: str, session: str) -> None:
        if path in self._sources:
            return
        stream = None
        if kind in ("log", "console"):
            stream = LogStream(_year_of(path), errors_only=(kind == "console"), offset=_zone_offset(path))
        self._sources[path] = _Source(path, kind, session, FileTailer(path), stream)
        self._source_names.add(str(path))

    def rescan_checkpoints(self) -> None:
        extra = Path(self.state.checkpoint_dir) if self.state.checkpoint_dir else None
        files, last = list_checkpoints(self.layout.work_dir, extra)
        self.state.set_checkpoints(files)
        with self.state.lock:
            self.state.last_checkpoint_file = last

    # -- bytes ----------------------------------------------------------------------------------------------
    def poll(self, only: Path | None = None) -> bool:
        """Read what was appended to every file (or to `only`). True if records or lines arrived."""
        changed = False
        for source in list(self._sources.values()):
            if only is not None and source.path != only:
                continue
            changed |= self._poll_source(source)
        return changed

    def watched_paths(self) -> list[Path]:
        return list(self._sources)

    def watches(self, path: str | Path) -> bool:
        """`path` is one of the files read (as the event sources spell it: see Fleet.reader_for)."""
        return str(path) in self._source_names

    def _poll_source(self, source: _Source) -> bool:
        if not source.started:
            source.started = True
            if self.cold_scan and source.stream is not None and source.kind == "log":
                return self._cold_start(source)
        changed = False
        while True:
            batch = source.tailer.poll()
            changed |= self._consume(source, batch)
            if not batch.more:
                break
        if source.stream is not None and source.stream.in_block and not changed:
            # the file went quiet with a config dump pending: it is complete
            self.state.apply_all(source.stream.flush(), source.session)
        self._note_file(source)
        return changed

    def _cold_start(self, source: _Source) -> bool:
        try:
            size = source.path.stat().st_size
        except OSError:
            source.started = False
            return False
        try:
            result = scan_file(source.path, size, source.stream)
        except OSError:
            source.started = False
            return False
        self.state.apply_all(result.records, source.session)
        self.state.note_lines(result.lines_parsed, result.long_lines, result.decode_fallbacks)
        source.tailer.skip_to(result.offset, result.signature)
        # the rest (a partial last line, bytes written meanwhile) comes through the tailer
        batch = source.tailer.poll()
        self._consume(source, batch)
        self._note_file(source)
        return True

    def _consume(self, source: _Source, batch: TailBatch) -> bool:
        if not batch.lines and not batch.events:
            return False
        records = self._parse(source, batch.lines)
        if source.kind == "console":
            # a traceback line has no timestamp: it was written about when the file last changed
            written = source.tailer.mtime
            records = [ErrorLine(written, r.kind, r.text) if isinstance(r, ErrorLine) and r.ts is None else r
                       for r in records]
        st = self.state
        st.apply_all(records, source.session)
        st.note_lines(
            len(batch.lines), batch.events.count("long_line"), batch.events.count("decode_fallback")
        )
        return True

    def _parse(self, source: _Source, lines: list[str]) -> list[Record]:
        out: list[Record] = []
        if source.stream is not None:
            for line in lines:
                out.extend(source.stream.feed(line))
            return out
        parse: Callable[[str], Record | None]
        if source.kind == "mmcv_json":
            parse = parse_mmcv_json_line
        else:
            by_epoch = None if self.state.config.loop is None else self.state.config.loop == "epoch"
            def parse(line: str) -> Record | None:
                return parse_scalars_line(line, by_epoch)
        for line in lines:
            rec = parse(line)
            if rec is not None:
                out.append(rec)
        return out

    def _note_file(self, source: _Source) -> None:
        dialect = source.stream.dialect if source.stream is not None and source.kind == "log" else None
        if dialect in ("mmengine", "mmcv"):
            with self.state.lock:
                self.state.framework = dialect  # the log's own header format is the best evidence
        t = source.tailer
        self.state.note_file(str(source.path), source.kind, t.size, t.mtime)

    def _read_test_dump(self, path: Path, session: str) -> None:
        try:
            st = path.stat()
            if self._test_dumps.get(path) == st.st_mtime or st.st_size > MAX_TEST_DUMP_BYTES:
                return
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        self._test_dumps[path] = st.st_mtime
        session_has_log = any(s.session == session and s.kind == "log" for s in self._sources.values())
        rec = parse_test_dump(text)
        if rec is not None and not session_has_log:  # the text log already holds the same `Epoch(test)` line
            self.state.apply_all([rec], session)
