"""Every run under the watched PATHs: discovery of new work dirs and sessions, and routing of file events."""

from __future__ import annotations

import threading
from pathlib import Path

from .discover import describe, find_work_dirs, run_names
from .reader import RunReader


class Fleet:
    def __init__(self, roots: list[Path], cold_scan: bool = True) -> None:
        self.roots = [Path(r).absolute() for r in roots]
        self.cold_scan = cold_scan
        self.readers: dict[Path, RunReader] = {}
        self._lock = threading.Lock()  # guards `readers` between the worker and HTTP threads

    def rediscover(self) -> bool:
        """Find new work dirs and sessions and read what they hold. True if anything changed."""
        found: list[Path] = []
        for root in self.roots:
            for wd in find_work_dirs(root):
                if wd not in found:
                    found.append(wd)
        names = run_names(sorted(set(found) | set(self.readers)))
        changed = False
        for wd in found:
            layout = describe(wd, names[wd])
            reader = self.readers.get(wd)
            if reader is None:
                reader = RunReader(layout, cold_scan=self.cold_scan)
                with self._lock:
                    self.readers[wd] = reader
                changed = True
            else:
                reader.state.name = names[wd]
            changed |= reader.refresh(layout)
        return changed

    def poll(self, path: Path | None = None) -> bool:
        """Read new bytes of every watched file, or only of the run that holds `path`."""
        if path is not None:
            reader = self.reader_for(path)
            if reader is not None:
                return reader.poll()
            return False
        changed = False
        for reader in self.current_readers():
            changed |= reader.poll()
        return changed

    def rescan_checkpoints(self) -> None:
        for reader in self.current_readers():
            reader.rescan_checkpoints()

    def reader_for(self, path: Path) -> RunReader | None:
        path = Path(path)
        for reader in self.current_readers():
            if path == reader.work_dir or reader.work_dir in path.parents:
                return reader
        return None

    def current_readers(self) -> list[RunReader]:
        with self._lock:
            return list(self.readers.values())

    def snapshots(self) -> list[dict]:
        return [r.state.snapshot() for r in sorted(self.current_readers(), key=lambda r: r.state.name)]
