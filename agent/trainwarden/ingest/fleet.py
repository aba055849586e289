"""Every run under the watched PATHs: discovery of new work dirs and sessions, and routing of file events."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from trainwarden.ingest.files.captures import capture_start, capture_work_dir, owner_of_capture
from trainwarden.ingest.files.discover import describe, find_work_dirs, run_names
from trainwarden.ingest.reader import RunReader
from trainwarden.ingest.seen import FirstSeen
from trainwarden.model import RunSnapshot
from trainwarden.parse.formats import FORMATS
from trainwarden.parse.formats.base import Format


class Fleet:
    def __init__(self, roots: list[Path], cold_scan: bool = True, consoles: list[tuple[str | None, Path]] = (),
                 formats: tuple[Format, ...] = FORMATS, exclude: tuple[str, ...] = ()) -> None:
        self.roots = [Path(r).absolute() for r in roots]
        self.cold_scan = cold_scan
        self.formats = formats
        self.exclude = tuple(exclude)  # `discovery.exclude` globs: folders and files left out entirely
        self.seen: FirstSeen | None = None  # when this host first read each run, across restarts (the agent's)
        # capture -> (size read, the work dir it names, its first line's time, the work dirs it fitted none of)
        self._named: dict[Path, tuple] = {}
        self._placed: dict[Path, Path] = {}  # capture -> the work dir whose run it adds its errors to
        self.readers: dict[Path, RunReader] = {}
        # the same readers by their work dir as text: `reader_for` walks up a path as text, not as Path objects
        # (it runs for every file event, and Path.parents built a Path per folder up to the root)
        self._by_folder: dict[str, RunReader] = {}
        self.consoles = [(name, Path(p).absolute()) for name, p in consoles]  # `--console [RUN=]FILE`, not yet placed
        self._lock = threading.Lock()  # guards `readers` between the worker and HTTP threads

    def rediscover(self) -> bool:
        """Find new work dirs and sessions and read what they hold. True if anything changed."""
        found: list[Path] = []
        real: set[str] = set()  # one run per real folder: two roots, or a root and a link into it, reach it twice
        for root in self.roots:
            for wd in find_work_dirs(root, formats=self.formats, exclude=self.exclude):
                if os.path.realpath(wd) not in real:
                    real.add(os.path.realpath(wd))
                    found.append(wd)
        found = self._place_captures(found)
        changed = self._forget_removed()
        names = run_names(sorted(set(found) | set(self.readers)))
        self._place_consoles(found, names)
        for wd in found:
            layout = describe(wd, names[wd], self.formats)
            reader = self.readers.get(wd)
            if reader is None:
                reader = RunReader(layout, cold_scan=self.cold_scan)
                self._add(wd, reader)
                changed = True
            else:
                reader.state.name = names[wd]
            changed |= reader.refresh(layout)
        return changed

    def _forget_removed(self) -> bool:
        """Drop the runs whose work dir was deleted (cleaned up by hand): they are gone, not stalled. A root that is
        itself missing (a network mount away for a while) drops nothing: its runs come back with it."""
        gone = [wd for wd in self.readers
                if not wd.exists() and any(root in wd.parents and root.is_dir() for root in self.roots)]
        if gone:
            with self._lock:
                for wd in gone:
                    del self.readers[wd]
                    del self._by_folder[os.fspath(wd)]
        return bool(gone)

    def _place_captures(self, found: list[Path]) -> list[Path]:
        """A capture beside or above the work dir it names is that run's stdout: it adds the run's errors instead of
        being a second run of the same training. The runs left."""
        work_dirs = [p for p in found if not p.is_file()]
        runs = []
        for path in found:
            if path in work_dirs:
                runs.append(path)
                continue
            owner = self._placed.get(path) or self._owner(path, work_dirs)
            if owner is None:
                runs.append(path)
                continue
            if path not in self._placed:
                self._placed[path] = owner
                if owner not in self.readers:
                    self._add(owner, RunReader(describe(owner, None, self.formats), cold_scan=self.cold_scan))
                self.readers[owner].add_console(path)
                if path in self.readers:  # read as a run of its own until its work dir appeared
                    with self._lock:
                        del self.readers[path]
                        del self._by_folder[os.fspath(path)]
        return runs

    def _owner(self, capture: Path, work_dirs: list[Path]) -> Path | None:
        """The work dir of the run a capture is the stdout of (discover.owner_of_capture), if it is watched. What the
        capture says is read again only while it names no work dir and has grown."""
        try:
            size = capture.stat().st_size
        except OSError:
            return None
        seen = self._named.get(capture)
        if seen is None or (seen[1] is None and seen[0] != size):
            seen = (size, capture_work_dir(capture), capture_start(capture), None)
        size, named, start, looked_among = seen
        key = tuple(work_dirs)
        if looked_among == key:
            return None  # nothing changed since it fitted none (a session exists before its trainer logs a line)
        owner = owner_of_capture(capture, named, work_dirs, start, self.formats)
        self._named[capture] = (size, named, start, key if owner is None else None)
        return owner

    def _add(self, wd: Path, reader: RunReader) -> None:
        if self.seen is not None and reader.state.first_seen is not None:
            reader.state.first_seen = self.seen.first_seen(wd, reader.state.first_seen)
        with self._lock:
            self.readers[wd] = reader
            self._by_folder[os.fspath(wd)] = reader

    def _place_consoles(self, found: list[Path], names: dict[Path, str]) -> None:
        """Give each console capture named on the command line to its run: by name, by folder, or the only run."""
        waiting = []
        for name, path in self.consoles:
            owners = [wd for wd in found if (name is not None and names[wd] == name)
                      or (name is None and (wd in path.parents or len(found) == 1))]
            if len(owners) == 1:
                wd = owners[0]
                if wd not in self.readers:
                    self._add(wd, RunReader(describe(wd, names[wd], self.formats), cold_scan=self.cold_scan))
                self.readers[wd].add_console(path)
            else:
                waiting.append((name, path))  # its run has not appeared yet
        self.consoles = waiting

    def poll(self) -> bool:
        """Read new bytes of every watched file."""
        changed = False
        for reader in self.current_readers():
            changed |= reader.poll()
        return changed

    def reader_for(self, path: Path | str) -> RunReader | None:
        # as the event sources give it: absolute and under a root's own spelling (not normalised: a root given as
        # `../runs` keeps its `..`, and so do the work dirs and every event path under it)
        folder = os.fspath(path)
        with self._lock:  # a dict lookup per folder up the path: this runs for every file event
            while True:
                reader = self._by_folder.get(folder)
                if reader is not None:
                    return reader
                parent = os.path.dirname(folder)
                if parent == folder:
                    return None
                folder = parent

    def current_readers(self) -> list[RunReader]:
        with self._lock:
            return list(self.readers.values())

    def snapshots(self) -> list[RunSnapshot]:
        return [r.state.snapshot() for r in sorted(self.current_readers(), key=lambda r: r.state.name)]
