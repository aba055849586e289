"""The read loop: one thread owns every read (discovery, cold scans, tailing, processes, GPUs).

File events and refresh requests arrive on its queue; a poll every `poll_interval` seconds covers file systems
that send no events (network mounts), and a walk of every root every `rediscover_interval` seconds finds what
an event could not announce. Runs are judged when new lines arrive and every `evaluate_interval` seconds (time
passing is news too: a stall).

Two ways of reading, chosen by the agent:
- event-driven (a notifier is configured: a red page must go out within moments of its line): each write's file
  event wakes the loop, which reads that file and judges at once;
- on demand (no notifier: nobody but a reader of the report learns of a line): writes wake nothing. Before a
  report is built (a scrape, /api/runs, the page) the requesting thread calls `catch_up`: on Linux it drains
  inotify's queue itself (app/file_events.py) and, when no file changed, returns at once (a scrape of an
  unchanged fleet stays a lookup); else the loop reads the files named (or, with watchdog or no trusted events,
  every file) and the request waits for that. The loop also drains and reads every `ON_DEMAND_POLL_SECONDS`
  (an early stop's checkpoint backup waits at most that long), and its safety poll still ends the trust in
  events that miss changes (a network mount), after which every request reads every file.
With 8 runs writing a line a second the second way costs a fraction of the first (bench/peer_figures.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from trainwarden.app.documents import GpuSampler
from trainwarden.app.file_events import FileEvents
from trainwarden.ingest.fleet import Fleet
from trainwarden.ingest.host.sources import HostSources
from trainwarden.outputs.metrics import CollectorStats
from trainwarden.parse.formats import recognise

log = logging.getLogger("trainwarden.app.read_loop")
_REDISCOVER = object()  # a path no run owns arrived: maybe a new work dir or session


class _Refresh:
    """A request to read everything now and judge it; `done` is set once that is over."""

    def __init__(self) -> None:
        self.done = threading.Event()


class _CatchUp:
    """A request to read the files named (None: every known file; no walk of the roots); `done` is set once read."""

    def __init__(self, paths: list[str] | None) -> None:
        self.paths = paths
        self.done = threading.Event()


class ReadLoop:
    # While file events announce every change, the poll is only a safety net and the walk of the roots is rare.
    EVENTS_TRUSTED_POLL_SECONDS = 2.0
    ON_DEMAND_POLL_SECONDS = 5.0  # reading on demand: every file read at least this often between requests
    REDISCOVER_SECONDS = 5.0
    EVENTS_TRUSTED_REDISCOVER_SECONDS = 30.0
    MAX_BATCH = 10_000  # queued paths handled per turn

    def __init__(self, fleet: Fleet, host: HostSources, gpus: GpuSampler, events: queue.Queue, file_events: FileEvents,
                 stats: CollectorStats, evaluate: Callable[[], None], poll_interval: float,
                 rediscover_interval: float | None, evaluate_interval: float, evaluate_min_gap: float,
                 gpu_interval: float, on_demand: bool = False) -> None:
        self.fleet = fleet
        self.host = host
        self.gpus = gpus
        self.events = events
        self.file_events = file_events
        self.stats = stats
        self.evaluate = evaluate
        self.poll_interval = poll_interval
        self.rediscover_interval = rediscover_interval  # None: 30 s with an observer on every root, else 5 s
        self.evaluate_interval = evaluate_interval
        # New lines are judged at once by default: a loss spike that lasts one logged line must not slip between
        # two judgements.
        self.evaluate_min_gap = min(evaluate_min_gap, evaluate_interval)
        self.on_demand = on_demand
        self.gpu_interval = gpu_interval  # read by the loop either way: a scrape never waits on NVML
        self.catch_ups = 0  # requests the loop read for so far (one turn of the loop may serve several)
        self.catch_ups_unchanged = 0  # requests that found no file changed (answered without the loop)
        self.ready = threading.Event()  # set once the first discovery (the cold scans) is read and judged
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = False  # something was read since the last evaluation

    @property
    def poll_seconds(self) -> float:
        if self.on_demand:
            return max(self.poll_interval, self.ON_DEMAND_POLL_SECONDS)
        if self.file_events.trusted:
            return max(self.poll_interval, self.EVENTS_TRUSTED_POLL_SECONDS)
        return self.poll_interval

    @property
    def rediscover_seconds(self) -> float:
        if self.rediscover_interval is not None:
            return self.rediscover_interval
        # an observer on every root announces new work dirs and sessions even after the safety poll found a change
        # it had not announced (under steady writes a line written between the drain and the poll can count)
        return self.EVENTS_TRUSTED_REDISCOVER_SECONDS if self.file_events.watching_every_root else self.REDISCOVER_SECONDS

    # -- from other threads -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="reader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        try:
            self.events.put_nowait(None)  # wakes the loop
        except queue.Full:
            pass  # a full queue: the loop is busy and sees the stop at its next turn
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def refresh(self, timeout: float) -> bool:
        """Have the loop read everything written so far (every root walked, every file, the processes, the GPUs)
        and judge it; wait for that. False if it did not happen within `timeout` or the loop is not running."""
        if self._thread is None or not self._thread.is_alive():
            return False
        return self._ask(_Refresh(), timeout)

    def _ask(self, request, timeout: float) -> bool:
        """Put a request on the loop's queue and wait until the loop has done it (False after `timeout`)."""
        deadline = time.monotonic() + timeout
        try:
            self.events.put(request, timeout=timeout)
        except queue.Full:
            return False
        return request.done.wait(max(0.0, deadline - time.monotonic()))

    def catch_up(self, timeout: float) -> bool:
        """Reading on demand: have the loop read what the files hold now (and the processes), and wait for that.
        True at once when inotify announced no change since the last drain. False, at once, when the agent reads
        on events (each write is read as it comes) or this is the loop's own thread; False after `timeout` when
        the loop is busy (the first cold scans): the caller serves what was read so far."""
        if not self.on_demand or self._thread is None or threading.current_thread() is self._thread:
            return False
        if not self._thread.is_alive():
            return False
        paths = self.file_events.drain() if self.file_events.trusted else None
        if paths == []:
            self.catch_ups_unchanged += 1
            return True  # inotify announced no change since the last drain: what was read is what the files hold
        return self._ask(_CatchUp(paths), timeout)

    # -- the loop -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        self._discover()
        self._sample_gpus()
        self._evaluate()
        self.ready.set()
        now = time.monotonic()
        next_poll, next_discovery = now + self.poll_seconds, now + self.rediscover_seconds
        next_evaluation, next_gpus, last_evaluation = now + self.evaluate_interval, now + self.gpu_interval, now
        while not self._stop.is_set():
            now = time.monotonic()
            if (self._changed and now - last_evaluation >= self.evaluate_min_gap) or now >= next_evaluation:
                self._evaluate()  # new lines, or time passing (a stall is judged by the clock)
                last_evaluation = time.monotonic()
                next_evaluation = last_evaluation + self.evaluate_interval
            wake = min(next_poll, next_discovery, next_evaluation, next_gpus)
            if self._changed:
                wake = min(wake, last_evaluation + self.evaluate_min_gap)
            items = self._drain(max(0.0, wake - time.monotonic()))
            if self._stop.is_set():
                break
            now = time.monotonic()
            catch_ups = [i for i in items if isinstance(i, _CatchUp)]
            if catch_ups:
                if any(r.paths is None for r in catch_ups):
                    self._timed("logs", self.fleet.poll)
                else:
                    named = list(dict.fromkeys(p for r in catch_ups for p in r.paths))
                    self._timed("logs", lambda batch=named: self._read_paths(batch, poll_checkpoint_runs=False,
                                                                              discover_now=True))
                self._timed("process", lambda: self.host.update_processes(self.fleet, discover=False))
                self.catch_ups += len(catch_ups)
                for request in catch_ups:
                    request.done.set()
            refreshes = [i for i in items if isinstance(i, _Refresh)]
            if refreshes:
                self._discover()
                self._sample_gpus()
                self._evaluate()
                for request in refreshes:
                    request.done.set()
                last_evaluation = time.monotonic()
                next_poll, next_discovery = now + self.poll_seconds, now + self.rediscover_seconds
                next_evaluation, next_gpus = last_evaluation + self.evaluate_interval, now + self.gpu_interval
                continue
            if self.file_events.overflow.is_set() or now >= next_discovery or any(i is _REDISCOVER for i in items):
                self.file_events.overflow.clear()  # events were dropped: only a walk of every root is sure
                self._discover()
                next_poll, next_discovery = now + self.poll_seconds, now + self.rediscover_seconds
            else:
                paths = [i for i in items if isinstance(i, str)]
                if paths:
                    self._timed("logs", lambda batch=paths: self._read_paths(batch))
                if now >= next_poll:
                    drained = self.file_events.drain()  # reading on demand: what changed since the last request
                    if drained:
                        self._timed("logs", lambda batch=drained: self._read_paths(batch, poll_checkpoint_runs=False))
                    self._timed("logs", self._safety_poll)
                    self._timed("process", lambda: self.host.update_processes(self.fleet, discover=False))
                    next_poll = now + self.poll_seconds
            if now >= next_gpus:
                self._sample_gpus()  # not news for the notifier by itself: GPU conditions wait for the next judgement
                next_gpus = now + self.gpu_interval

    def _discover(self) -> None:
        self._timed("logs", self.fleet.rediscover)
        self._timed("process", lambda: self.host.update_processes(self.fleet, discover=True))

    def _sample_gpus(self) -> None:
        self.gpus.sample()

    def _evaluate(self) -> None:
        self._changed = False
        self.evaluate()

    def _safety_poll(self) -> bool:
        changed = self.fleet.poll()
        # watchdog on demand is not asked for writes: its poll reads them, and they prove nothing
        if changed and (not self.on_demand or self.file_events.drainable):
            self.file_events.unannounced_change()
        return changed

    def _drain(self, timeout: float) -> list:
        try:
            first = self.events.get(timeout=timeout)
        except queue.Empty:
            return []
        items = [first]
        while len(items) < self.MAX_BATCH:
            try:
                items.append(self.events.get_nowait())
            except queue.Empty:
                break
        return [i for i in items if i is not None]

    def _read_paths(self, paths: list[str], poll_checkpoint_runs: bool = True, discover_now: bool = False) -> bool:
        """Read what the paths announce. A run announced only by a checkpoint is polled too unless
        `poll_checkpoint_runs` is off (its writes are announced by their own events, or read on demand). A path no
        run owns asks for a walk of the roots: at once with `discover_now` (a request waits for its answer), else
        at the loop's next turn."""
        by_reader: dict[int, tuple] = {}  # id -> (reader, its paths in this batch)
        unknown = False
        changed = False
        for p in paths:
            path = Path(p)
            if any(part.startswith(".") for part in path.parts[-3:]):
                continue  # hidden folders (an outbox, editor swap files) are never runs
            reader = self.fleet.reader_for(path)
            if reader is None:
                unknown = True
            else:
                by_reader.setdefault(id(reader), (reader, []))[1].append(path)
        for reader, announced in by_reader.values():
            checkpoints = [p for p in announced if p.suffix == ".pth" or p.name == "last_checkpoint"]
            if checkpoints:
                reader.rescan_checkpoints()
                changed = True
            others = [p for p in announced if p not in checkpoints]
            if any(not reader.watches(p) and (p.is_dir() or recognise(p.name, b"", reader.layout.formats)) for p in others):
                changed |= reader.refresh()  # a new session (a resume), console capture or any format's file
            elif others or (poll_checkpoint_runs and not self.on_demand):
                changed |= reader.poll()
        if unknown and discover_now:
            changed |= self.fleet.rediscover()
            self.host.update_processes(self.fleet, discover=True)
        elif unknown:
            try:
                self.events.put_nowait(_REDISCOVER)
            except queue.Full:
                self.file_events.overflow.set()  # the same walk, asked for another way
        return changed

    def _timed(self, collector: str, fn: Callable[[], object]) -> None:
        start = time.perf_counter()
        try:
            self._changed |= bool(fn())
            ok = True
        except Exception:  # the loop must survive anything a file system or a log can throw at it
            log.exception("%s collector failed", collector)
            ok = False
        self.stats.success[collector] = ok
        self.stats.duration_seconds[collector] = time.perf_counter() - start
