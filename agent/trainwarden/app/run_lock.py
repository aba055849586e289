"""One notifier per run per host: `trainwarden run` and `trainwarden watch` (or two watches) that see the same work
dir agree, through OS file locks in the state folder (`<notify.state_dir>/locks/`), on which of them sends its
notifications; the others still show and export the run.

- A run is notified by the agent holding its `<work dir hash>.notify.lock`: the first to take it keeps it.
- `trainwarden run` holds its work dir's `.run.lock` for as long as it supervises the training. A watch that sees a
  run supervised (the `.run.lock` held) lets its `.notify.lock` go at its next judgement, and `run` takes it at
  its next: `run` knows more (the exit code, the console's tracebacks and OOMs), so it wins even when it starts
  second.
- The locks are the operating system's (`fcntl.flock`, `msvcrt.locking`): they die with their process, whatever
  kills it; no PID file outlives a crash. The holder's successor takes over at its next judgement (a watch judges
  every 5 s, `run` every second).
- The holder keeps `<work dir hash>.alerts.json` beside the lock: the run's conditions it has notified and not
  yet resolved. A successor takes them as already sent (an active red is not sent again; its resolved notice comes
  from the successor), and what fired since goes out from the successor once.
Host conditions (a hot GPU) follow `host.notify.lock` the same way (the first agent to take it).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

from trainwarden.ingest.host.process import path_key
from trainwarden.model import StatusReport
from trainwarden.outputs.notify.outbox import atomic_write
from trainwarden.outputs.notify.tracker import AlertTracker

log = logging.getLogger("trainwarden.notify")


class FileLock:
    """An exclusive, non-blocking lock on a file, released when this process ends (however it ends)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> bool:
        if self._file is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+b")  # noqa: SIM115 - held open as long as the lock is
        except OSError:
            return False
        try:
            if os.name == "nt":
                import msvcrt

                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._file = fh
        return True

    def release(self) -> None:
        fh, self._file = self._file, None
        if fh is None:
            return
        try:
            if os.name == "nt":
                import msvcrt

                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        except OSError:
            pass
        fh.close()

    def is_free(self) -> bool:
        """Nobody holds it (taken and let go at once: a probe)."""
        if self._file is not None:
            return False
        free = self.acquire()
        self.release()
        return free


def _key(work_dir: str | Path) -> str:
    import hashlib

    return hashlib.sha256(path_key(Path(work_dir)).encode()).hexdigest()[:20]


class NotifyGate:
    """Which runs of a status report this agent notifies for (see the module's text)."""

    def __init__(self, lock_dir: Path, supervised: Path | None = None) -> None:
        self.lock_dir = Path(lock_dir)
        self.supervised = _key(supervised) if supervised is not None else None
        self._supervising = FileLock(self.lock_dir / f"{self.supervised}.run.lock") if self.supervised else None
        if self._supervising is not None and not self._supervising.acquire():
            log.warning("another `trainwarden run` supervises %s: it sends the run's notifications", supervised)
        self._notify: dict[str, FileLock] = {}  # run key -> its notify lock (held or not)
        self._held: dict[str, str] = {}  # run name -> key, held at the last judgement
        self._written: dict[str, dict] = {}  # run key -> the record last written
        self.host = FileLock(self.lock_dir / "host.notify.lock")

    def _holds(self, key: str, run: str) -> bool:
        lock = self._notify.setdefault(key, FileLock(self.lock_dir / f"{key}.notify.lock"))
        if key == self.supervised:
            self._supervising.acquire()  # (another `run` of this work dir may have ended since)
        elif not FileLock(self.lock_dir / f"{key}.run.lock").is_free():
            if lock.held:
                log.info("run %s: `trainwarden run` supervises it and sends its notifications now", run)
                lock.release()
            return False
        had = lock.held
        if lock.acquire() and not had:
            log.info("run %s: this agent sends its notifications", run)
        return lock.held

    def select(self, report: StatusReport, tracker: AlertTracker) -> StatusReport:
        """The report with only the runs (and host conditions) this agent notifies for; the tracker takes over what
        a previous holder notified, and forgets the runs another agent notifies for now."""
        held: dict[str, str] = {}
        for run in report.runs:
            key = _key(run.work_dir)
            if self._holds(key, run.run):
                held[run.run] = key
        for name, key in held.items():
            if name not in self._held:
                tracker.adopt(self._read(key))
        for name in self._held.keys() - held.keys():
            tracker.forget(name)
            self._written.pop(self._held[name], None)
        self._held = held
        conditions = report.conditions if self.host.acquire() else ()
        return replace(report, runs=tuple(r for r in report.runs if r.run in held), conditions=conditions)

    def record(self, tracker: AlertTracker) -> None:
        """Write what this agent notified for each run it holds, for the agent that may come after it."""
        for name, key in self._held.items():
            entries = tracker.entries(name)
            if self._written.get(key) != entries:
                try:
                    atomic_write(self.lock_dir / f"{key}.alerts.json", {"active": entries})
                    self._written[key] = entries
                except OSError:
                    pass  # a full disk: written at the next judgement

    def _read(self, key: str) -> dict:
        try:
            found = json.loads((self.lock_dir / f"{key}.alerts.json").read_text(encoding="utf-8")).get("active", {})
        except (OSError, ValueError, AttributeError):
            return {}
        return {k: v for k, v in found.items() if isinstance(v, dict)} if isinstance(found, dict) else {}

    def close(self) -> None:
        for lock in self._notify.values():
            lock.release()
        self.host.release()
        if self._supervising is not None:
            self._supervising.release()


def lock_dir(cfg) -> Path:
    """Where every agent of this user on this host keeps its run locks: the state folder's `locks/`."""
    from trainwarden.app.config import default_state_dir

    return (cfg.notify.state_dir or default_state_dir()) / "locks"
