"""Read one run's files into its RunState: a cold-start scan of each text log, then incremental tailing.

What a file is and how its lines become records is its format's (parse/formats/); what the reader does with it
is its format's Role: a session's text log is the authority, its JSON file serves only a session without one, a
dump is read whole, a console capture is a file of the whole run. No threads here: the agent calls `refresh()`
(layout changes) and `poll()` (new bytes) from its own worker, and `status` calls `refresh()` once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from trainwarden.ingest.files.discover import FormatFile, RunLayout, describe, list_checkpoints
from trainwarden.ingest.files.lines import last_lines
from trainwarden.ingest.files.scan import scan_file
from trainwarden.ingest.files.tail import FileTailer, TailBatch
from trainwarden.model import ErrorLine, Record
from trainwarden.parse.configdump import parse_config_dump
from trainwarden.parse.formats import by_name
from trainwarden.parse.formats.base import Format, LineParser, ParseContext, Role
from trainwarden.parse.prefix import clock_offset
from trainwarden.state import RunState

MAX_DUMP_BYTES = 1 << 20
CONSOLE = by_name("console")  # the format of a capture named with `--console`, whatever its name
# What happened to the files, by name, for the lead's metrics: every key is there from the start, so that a
# reader of the dict on another thread never sees it change size.
log = logging.getLogger("trainwarden.reader")


@dataclass
class _Source:
    path: Path
    format: Format
    session: str
    tailer: FileTailer
    parser: LineParser
    started: bool = False


def _year_of(path: Path) -> int:
    try:
        return time.localtime(path.stat().st_mtime).tm_year
    except OSError:
        return time.localtime().tm_year


def _written(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _zone_offset(path: Path, fmt: Format) -> float:
    """The trainer's clock zone against ours, from a log that is being written now (prefix.clock_offset)."""
    try:
        written = path.stat().st_mtime
        lines = last_lines(path, 20)
    except OSError:
        return 0.0
    year = time.localtime(written).tm_year
    for line in reversed(lines):
        ts = fmt.line_timestamp(line, year)
        if ts is not None:
            offset = clock_offset(ts, written, time.time())
            if offset:
                log.warning("%s: its lines are %.2f h ahead of this machine's clock (another time zone): read "
                            "%+.2f h", path, -offset / 3600, offset / 3600)
            return offset
    return 0.0


class RunReader:
    def __init__(self, layout: RunLayout, cold_scan: bool = True) -> None:
        self.layout = layout
        self.state = RunState(layout.name, str(layout.work_dir), layout.framework)
        self.state.first_seen = time.time()  # a run quiet for long before this is history (judge/lifecycle.py)
        self.cold_scan = cold_scan
        self._sources: dict[Path, _Source] = {}
        self._source_names: set[str] = set()  # the same paths as text: `watches` runs for every file event
        self._dumps: dict[Path, float] = {}
        self._extra_consoles: list[Path] = []

    @property
    def file_events(self) -> dict[str, int]:
        """What happened to the run's files so far (counted in its state, exported per event)."""
        with self.state.lock:
            return dict(self.state.counters.file_events)

    @property
    def work_dir(self) -> Path:
        return self.layout.work_dir

    def add_console(self, path: Path) -> None:
        """A console capture made some other way (nohup, tee, slurm): read for errors only."""
        self._extra_consoles.append(Path(path))

    # -- layout ---------------------------------------------------------------------------------------------
    def refresh(self, layout: RunLayout | None = None) -> bool:
        """Pick up new sessions and files, read everything new, rescan checkpoints. True if anything changed."""
        self.layout = layout or describe(self.layout.work_dir, self.layout.name, self.layout.formats)
        st = self.state
        with st.lock:
            if st.framework == "unknown":
                st.framework = self.layout.framework
            st.config_file = self.layout.config_file.name if self.layout.config_file else None
        for session in self.layout.sessions:
            text = session.files.get(Role.LOG)
            json = session.files.get(Role.JSON)
            if text is not None:
                self._ensure(text, session.id)
            elif json is not None:
                self._ensure(json, session.id)
            dump = session.files.get(Role.DUMP)
            if dump is not None:
                self._read_dump(dump, session.id)
        for file in [*self.layout.run_files, *(FormatFile(p, CONSOLE) for p in self._extra_consoles)]:
            self._ensure(file, file.path.name)
        changed = self.poll()
        self._read_config_copies()
        self.rescan_checkpoints()
        return changed

    def _read_config_copies(self) -> None:
        """A log without a config dump (a Runner built in Python logs none) still has the config MMEngine dumps
        beside it (`<ts>/vis_data/config.py`, `<work_dir>/<name>.py`): its length is read from there."""
        st = self.state
        if st.config.max_epochs or st.config.max_iterations:
            return
        copies = [self.layout.work_dir / s.id / "vis_data" / "config.py" for s in reversed(self.layout.sessions)]
        if self.layout.config_file is not None:
            copies.append(self.layout.config_file)
        for path in copies:
            text = self._changed_dump(path)
            if text is None:
                continue
            facts = parse_config_dump(text)
            if facts.max_epochs or facts.max_iterations:
                st.apply_all([facts], "config")
                return

    def _ensure(self, file: FormatFile, session: str) -> None:
        if file.path in self._sources:
            return
        fmt = file.format
        context = ParseContext(_year_of(file.path), _zone_offset(file.path, fmt), self._loop, _written(file.path))
        self._sources[file.path] = _Source(file.path, fmt, session, FileTailer(file.path), fmt.new_parser(context))
        self._source_names.add(str(file.path))

    def _loop(self) -> str | None:
        return self.state.config.loop

    def rescan_checkpoints(self) -> None:
        extra = Path(self.state.checkpoint_dir) if self.state.checkpoint_dir else None
        files, last = list_checkpoints(self.layout.work_dir, extra)
        self.state.set_checkpoints(files)
        with self.state.lock:
            self.state.last_checkpoint_file = last

    # -- bytes ----------------------------------------------------------------------------------------------
    def poll(self) -> bool:
        """Read what was appended to every file. True if records or lines arrived."""
        changed = False
        for source in list(self._sources.values()):
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
            if self.cold_scan and source.format.scan is not None:
                return self._cold_start(source)
        changed = False
        while True:
            batch = source.tailer.poll()
            changed |= self._consume(source, batch)
            if not batch.more:
                break
        if source.parser.holding and not changed:
            # the file went quiet with a config dump pending: it is complete
            self.state.apply_all(source.parser.flush(), source.session)
        self._note_file(source)
        return changed

    def _cold_start(self, source: _Source) -> bool:
        try:
            size = source.path.stat().st_size
            result = scan_file(source.path, size, source.parser, markers=source.format.scan)
        except OSError:
            source.started = False
            return False
        self.state.apply_all(result.records, source.session)
        self.state.note_lines(result.lines_parsed, result.long_lines, result.decode_fallbacks)
        self.state.note_file_events(["long_line"] * result.long_lines + ["decode_fallback"] * result.decode_fallbacks)
        source.tailer.skip_to(result.offset, result.signature)
        # the rest (a partial last line, bytes written meanwhile) comes through the tailer
        batch = source.tailer.poll()
        self._consume(source, batch)
        self._note_file(source)
        return True

    def _consume(self, source: _Source, batch: TailBatch) -> bool:
        if not batch.lines and not batch.events:
            return False
        records: list[Record] = []
        for line in batch.lines:
            records.extend(source.parser.feed(line))
        if source.format.role is Role.CONSOLE:
            # a traceback line has no timestamp: it was written about when the file last changed
            written = source.tailer.mtime
            records = [ErrorLine(written, r.kind, r.text) if isinstance(r, ErrorLine) and r.ts is None else r
                       for r in records]
        st = self.state
        st.apply_all(records, source.session)
        # an over-long line is still counted as a parse error there, as before the file events had names
        st.note_lines(len(batch.lines), batch.events.count("long_line"), batch.events.count("decode_fallback"))
        st.note_file_events(batch.events)
        return True

    def _note_file(self, source: _Source) -> None:
        framework = source.parser.framework if source.format.role is Role.LOG else None
        if framework is not None:
            with self.state.lock:
                self.state.framework = framework  # the log's own header format is the best evidence
        t = source.tailer
        self.state.note_file(str(source.path), source.format.kind, t.size, t.mtime)

    def _changed_dump(self, path: Path) -> str | None:
        """The text of a dump (a config copy, a test dump) written since it was last read; None: unchanged, too
        large or unreadable."""
        try:
            st = path.stat()
            if self._dumps.get(path) == st.st_mtime or st.st_size > MAX_DUMP_BYTES:
                return None
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        self._dumps[path] = st.st_mtime
        return text

    def _read_dump(self, file: FormatFile, session: str) -> None:
        path = file.path
        text = self._changed_dump(path)
        if text is None:
            return
        session_has_log = any(s.session == session and s.format.role is Role.LOG for s in self._sources.values())
        if session_has_log:  # the text log already holds the same `Epoch(test)` line
            return
        parser = file.format.new_parser(ParseContext(time.localtime(self._dumps[path]).tm_year))
        self.state.apply_all([*parser.feed(text), *parser.flush()], session)
