"""File-system events turned into paths on the read loop's queue, and whether they can be trusted.

On Linux they come straight from inotify (ingest/files/events.py: one descriptor, one thread, one queue put per
changed path); elsewhere (macOS, Windows) or where inotify cannot be set up, from watchdog's observer.

While events announce every change under every root, the read loop polls only as a safety net; changes that its
poll finds and no event announced (a network mount sends none) end that trust for good.

An agent that reads on demand (`on_demand`) is woken by no write: inotify's events then wait in the kernel's queue,
with no thread, until `drain()` is called (before a report is built, and by the read loop every few seconds), so
a request that finds none knows nothing changed without reading a file. watchdog has no such queue: there, only
files and folders that appear, go or move are announced, and `drain()` cannot say what changed (None).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import warnings
from pathlib import Path

from trainwarden.outputs.metrics import CollectorStats

log = logging.getLogger("trainwarden.app.file_events")


class EnqueueHandler:
    """A watchdog event handler that only enqueues paths and never raises (an exception would end the observer's
    thread silently). A path the queue has no room for is counted and raises `overflow`: the read loop then walks
    every root instead of trusting the events it got."""

    # Our own reads make the file system report "opened" and "closed_no_write": reacting to those would read
    # again, forever. Only changes matter.
    IGNORED = frozenset({"opened", "closed_no_write"})

    def __init__(self, events: queue.Queue, stats: CollectorStats, overflow: threading.Event) -> None:
        self.events = events
        self.stats = stats
        self.overflow = overflow
        self._failure_logged = False

    def dispatch(self, event) -> None:
        kind = getattr(event, "event_type", None)
        if kind in self.IGNORED or (kind == "modified" and getattr(event, "is_directory", False)):
            return  # a folder is "modified" by every write to a file in it: the file's own event is enough
        for path in (getattr(event, "src_path", None), getattr(event, "dest_path", None)):
            if not path:
                continue
            try:
                self.events.put_nowait(os.fsdecode(path))
            except queue.Full:
                self.dropped()
            except Exception:  # anything else: still never out of the observer's thread
                self.dropped()
                if not self._failure_logged:
                    self._failure_logged = True
                    log.exception("a file event could not be queued (counted in file_events_dropped from now on)")

    def dropped(self) -> None:
        self.stats.file_events_dropped += 1  # only the one observer thread (watchdog's dispatcher or inotify's reader) writes it
        self.overflow.set()


class FileEvents:
    """The observer of every root. `watching_every_root` once it started on all of them; `trusted` while, besides,
    events announce every change (the safety poll found none they had not)."""

    UNANNOUNCED_LIMIT = 2  # twice, not once: a line written between the queue's drain and the poll is no proof

    BACKENDS = ("auto", "inotify", "watchdog")

    def __init__(self, roots: list[Path], events: queue.Queue, stats: CollectorStats, enabled: bool = True,
                 on_demand: bool = False, backend: str = "auto") -> None:
        if backend not in self.BACKENDS:
            raise ValueError(f"file events backend {backend!r}: one of {', '.join(self.BACKENDS)}")
        self.roots = roots
        self.enabled = enabled
        self.on_demand = on_demand
        self.modifications = not on_demand  # watchdog's observer: each write announced (a thread woken) or not
        self._drain_lock = threading.Lock()  # the HTTP threads and the read loop drain the same descriptor
        self.backend = backend
        self.overflow = threading.Event()
        self.handler = EnqueueHandler(events, stats, self.overflow)
        self.watching_every_root = False
        self.trusted = False
        self.source: str | None = None  # "inotify" or "watchdog" once started
        self._unannounced = 0
        self._observer = None  # watchdog's Observer or an InotifyWatcher: both have stop() and join()

    def start(self) -> None:
        if not self.enabled:
            return
        if self.backend != "watchdog" and self._start_inotify():
            return
        if self.backend == "inotify":
            log.warning("inotify is unavailable: polling for changes")
            return
        self._start_watchdog()

    def _start_inotify(self) -> bool:
        from trainwarden.ingest.files import events as inotify  # here: only Linux has it

        if not inotify.available():
            return False
        try:
            watcher = inotify.InotifyWatcher(self.roots, self._enqueue)
        except OSError as exc:  # no inotify, or the watch limit reached: watchdog's observer may still work
            log.warning("inotify cannot watch the roots (%s)", exc)
            return False
        if not self.on_demand:
            watcher.start()  # its thread puts each change on the queue as it comes
        self._observer = watcher
        self.source = "inotify"
        self.watching_every_root = self.trusted = True
        return True

    @property
    def drainable(self) -> bool:
        """Changes wait in inotify's queue for `drain()` (reading on demand on Linux)."""
        return self.on_demand and self.source == "inotify" and self._observer is not None

    def drain(self) -> list[str] | None:
        """Reading on demand: the paths changed since the last drain ([] when none), every root when the kernel's
        queue overflowed; None when this cannot say (watchdog, polling, stopped): then everything must be read."""
        if not self.drainable:
            return None
        with self._drain_lock:
            watcher = self._observer
            if watcher is None or watcher.stopped:
                return None
            changed: dict[str, None] = {}
            while batch := watcher.wait(0):
                changed.update(dict.fromkeys(batch))
            return None if watcher.stopped else list(changed)

    def _enqueue(self, path: str) -> None:
        """From the inotify thread: one changed path onto the queue (a full queue asks the loop for a walk)."""
        try:
            self.handler.events.put_nowait(path)
        except queue.Full:
            self.handler.dropped()

    def _start_watchdog(self) -> None:
        try:
            from watchdog import events as ev  # imported here: `status` never needs it
            from watchdog.observers import Observer
        except ImportError:
            log.warning("watchdog is not installed: polling for changes")
            return
        # only changes: the kernel is not even asked for opens, reads and closes (our own reads among them), nor
        # for folders "modified" by each write to a file in them
        watched = [ev.FileCreatedEvent, ev.FileDeletedEvent, ev.FileMovedEvent, ev.DirCreatedEvent, ev.DirDeletedEvent,
                   ev.DirMovedEvent, *([ev.FileModifiedEvent] if self.modifications else [])]
        # watchdog's inotify emitter warns when a new folder is registered twice (a race inside it): harmless
        warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)
        observer = Observer()
        scheduled = 0
        for root in self.roots:
            try:
                observer.schedule(self.handler, str(root), recursive=True, event_filter=watched)
                scheduled += 1
            except (OSError, RuntimeError) as exc:
                log.warning("cannot watch %s for events (%s): polling it", root, exc)
        if not scheduled:
            return
        try:
            observer.start()
        except (OSError, RuntimeError) as exc:
            log.warning("file events unavailable (%s): polling for changes", exc)
            return
        self._observer = observer
        self.source = "watchdog"
        self.watching_every_root = self.trusted = scheduled == len(self.roots)

    def unannounced_change(self) -> None:
        """The safety poll found a change that no event announced."""
        if not self.trusted:
            return
        self._unannounced += 1
        if self._unannounced >= self.UNANNOUNCED_LIMIT:
            self.trusted = False
            log.info("changes arrive without file events: polling at the shorter interval from now on")

    def stop(self) -> None:
        """Stop the observer (no event arrives after this; `trusted` is left as it was, as on a mount gone quiet)."""
        observer, self._observer = self._observer, None
        if observer is None:
            return
        if self.source == "inotify":
            observer.stop()
            with self._drain_lock:  # no drain reads the descriptor while it closes
                observer.join(timeout=5)
            return
        # watchdog logs an ERROR when its emitter thread is stopped with events in flight: not ours to show
        logging.getLogger("watchdog").setLevel(logging.CRITICAL)
        try:
            observer.stop()
            observer.join(timeout=5)
        except Exception as exc:  # the agent's shutdown goes on whatever the observer does: said, not swallowed
            log.warning("stopping the file observer failed: %s: %s", type(exc).__name__, exc)
