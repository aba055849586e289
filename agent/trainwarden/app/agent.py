"""Wiring: the one place that starts threads, the file observer and the HTTP server.

One worker thread owns all reading (discovery, cold scans, tailing); watchdog handlers only put paths on its
queue, and a poll every `poll_interval` seconds covers file systems that send no events (network mounts).
HTTP threads only take snapshots.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from trainwarden.app.web import WebApp, make_server
from trainwarden.ingest.files.discover import newest_log
from trainwarden.ingest.files.lines import last_lines
from trainwarden.ingest.fleet import Fleet
from trainwarden.ingest.host.sources import HostSources
from trainwarden.judge.policy import DEFAULT_POLICY, Policy, PolicySet, as_policy_set
from trainwarden.model import RunReport, StatusReport
from trainwarden.outputs.metrics import CollectorStats, make_registry
from trainwarden.outputs.notify.service import Notifier
from trainwarden.outputs.status import document, status_report

log = logging.getLogger("trainwarden.app.agent")
_REDISCOVER = object()


class _EnqueueHandler:
    """A watchdog event handler that only enqueues the path and can never raise (an exception would end the
    observer thread silently)."""

    def __init__(self, events: queue.Queue) -> None:
        self.events = events

    # Our own reads make the file system report "opened" and "closed_no_write": reacting to those would read
    # again, forever. Only changes matter.
    IGNORED = frozenset({"opened", "closed_no_write"})

    def dispatch(self, event) -> None:
        try:
            kind = getattr(event, "event_type", None)
            if kind in self.IGNORED or (kind == "modified" and getattr(event, "is_directory", False)):
                return  # a folder is "modified" by every write to a file in it: the file's own event is enough
            self.events.put_nowait(event.src_path)
            dest = getattr(event, "dest_path", None)
            if dest:
                self.events.put_nowait(dest)
        except Exception:
            pass


def _inside(path: Path, folder: Path) -> bool:
    """`path`, links resolved, lies in `folder` (itself resolved: a work dir that is a link to a data disk is fine)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


class Agent:
    def __init__(
        self,
        roots: list[Path],
        host: str = "127.0.0.1",
        port: int = 9841,
        policy: Policy | PolicySet = DEFAULT_POLICY,
        poll_interval: float = 0.5,
        rediscover_interval: float | None = None,
        use_watchdog: bool = True,
        clock: Callable[[], float] = time.time,
        host_sources: HostSources | None = None,
        notifier: Notifier | None = None,
        evaluate_interval: float = 5.0,
        evaluate_min_gap: float = 0.0,
    ) -> None:
        self.fleet = Fleet(roots)
        self.host = host_sources if host_sources is not None else HostSources()
        self.notifier = notifier
        self.evaluate_interval = evaluate_interval  # judged again this often when nothing is read (stalls)
        # New lines are judged at once by default: a loss spike that lasts one logged line must not slip between two
        # judgements. (Without a notifier nothing is judged here at all: each scrape judges for itself.)
        self.evaluate_min_gap = min(evaluate_min_gap, evaluate_interval)
        self.policy = policy
        self.poll_interval = poll_interval
        # None: every 5 s when polling, every 30 s when file events work (they announce a new run at once; the
        # walk is only the safety net then)
        self._rediscover_given = rediscover_interval
        self.rediscover_interval = rediscover_interval if rediscover_interval is not None else 5.0
        self.use_watchdog = use_watchdog
        self.clock = clock
        self.stats = CollectorStats(notifier=notifier)
        self.events: queue.Queue = queue.Queue(maxsize=100000)
        self.ready = threading.Event()  # set once the first discovery (the cold scans) is done
        self._stop = threading.Event()
        self._events_trusted = False  # file events work for every root (set by the observer's start)
        self._unannounced = 0  # changes the safety poll found that no event had announced
        self._changed = False  # something was read since the last evaluation
        self._backups: set[Path] = set()
        self._doc_lock = threading.Lock()
        self._doc_cache: tuple | None = None
        self._observer = None
        self._worker: threading.Thread | None = None
        self.registry = make_registry(self.status_report, self.stats)
        app = WebApp(registry=self.registry, status=self.status_report, tail=self.tail)
        self.server = make_server(app, host, port)
        self._server_thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    # -- reading (HTTP threads) ------------------------------------------------------------------------------
    def status_report(self) -> StatusReport:
        """Built at each request from the latest snapshots, with the GPUs read then; reused for up to a second
        while no run changed (a dashboard scraping every few milliseconds costs one build a second)."""
        readers = self.fleet.current_readers()
        key = tuple((id(r), r.state.version) for r in readers)
        with self._doc_lock:
            cached = self._doc_cache
            if cached is not None and cached[0] == key and time.monotonic() - cached[1] < 1.0:
                return cached[2]
            report = self._build_report()
            self._doc_cache = (key, time.monotonic(), report)
            return report

    def status_document(self) -> dict:
        """The status report as JSON-ready data (what /api/runs serves)."""
        return document(self.status_report())

    def _build_report(self) -> StatusReport:
        reading = self.host.sample_gpus()
        self.stats.success["gpu"] = reading.ok
        self.stats.duration_seconds["gpu"] = reading.duration_seconds
        return status_report(self.fleet.snapshots(), self.policy, self.clock(), reading.gpus, reading.error)

    def tail_lines(self, run: str, n: int) -> list[str]:
        found = self.tail(run, n)
        return found["lines"] if found else []

    def tail(self, run: str, n: int) -> dict | None:
        for reader in self.fleet.current_readers():
            if reader.state.name == run:
                path = newest_log(reader.layout)
                if path is None:
                    return {"run": run, "file": None, "lines": []}
                if not _inside(path, reader.work_dir):
                    # a log that is a link to somewhere else (/etc/shadow, another user's home): its text is not served
                    return {"run": run, "file": str(path), "lines": [], "error": "the log links outside the run's work dir"}
                try:
                    return {"run": run, "file": str(path), "lines": last_lines(path, n)}
                except OSError as exc:
                    return {"run": run, "file": str(path), "lines": [], "error": exc.strerror or str(exc)}
        return None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._server_thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)
        self._server_thread.start()
        if self.notifier is not None:
            self.notifier.start()
        self._worker = threading.Thread(target=self._work, name="reader", daemon=True)
        self._worker.start()
        if self.use_watchdog:
            self._start_observer()

    def request_stop(self) -> None:
        """Ask `wait()` to return (from a signal handler: no locks, no joins)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        self.events.put(None)
        if self._observer is not None:
            # watchdog logs an ERROR when its emitter thread is stopped with events in flight: not ours to show
            logging.getLogger("watchdog").setLevel(logging.CRITICAL)
            try:
                self._observer.stop()
                self._observer.join(timeout=5)
            except Exception:
                pass
        self.server.shutdown()
        self.server.server_close()
        if self._worker is not None:
            self._worker.join(timeout=10)
        if self.notifier is not None:
            self.notifier.stop()
        self.host.close()

    def wait(self) -> None:
        while not self._stop.wait(0.5):
            pass

    def _start_observer(self) -> None:
        try:
            from watchdog import events as ev  # imported here: `status` never needs it
            from watchdog.observers import Observer
        except ImportError:
            log.warning("watchdog is not installed: polling every %.1f s", self.poll_interval)
            return
        # only changes: the kernel is not even asked for opens, reads and closes (our own reads among them), nor
        # for folders "modified" by each write to a file in them
        watched = [ev.FileModifiedEvent, ev.FileCreatedEvent, ev.FileDeletedEvent, ev.FileMovedEvent,
                   ev.DirCreatedEvent, ev.DirDeletedEvent, ev.DirMovedEvent]
        # watchdog's inotify emitter warns when a new folder is registered twice (a race inside it): harmless
        warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)
        observer = Observer()
        handler = _EnqueueHandler(self.events)
        scheduled = 0
        for root in self.fleet.roots:
            try:
                observer.schedule(handler, str(root), recursive=True, event_filter=watched)
                scheduled += 1
            except (OSError, RuntimeError) as exc:
                log.warning("cannot watch %s for events (%s): polling it every %.1f s", root, exc, self.poll_interval)
        if scheduled:
            try:
                observer.start()
                self._observer = observer
                if scheduled == len(self.fleet.roots):
                    self._events_trusted = True
                    if self._rediscover_given is None:
                        self.rediscover_interval = 30.0
            except (OSError, RuntimeError) as exc:
                log.warning("file events unavailable (%s): polling every %.1f s", exc, self.poll_interval)

    # -- the worker ------------------------------------------------------------------------------------------
    def _work(self) -> None:
        self._timed("logs", self.fleet.rediscover)
        self._timed("process", lambda: self.host.update_processes(self.fleet, discover=True))
        self._evaluate()
        self.ready.set()
        next_poll = time.monotonic() + self._poll_every()
        next_discovery = time.monotonic() + self.rediscover_interval
        next_evaluation = time.monotonic() + self.evaluate_interval
        last_evaluation = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if (self._changed and now - last_evaluation >= self.evaluate_min_gap) or now >= next_evaluation:
                # new lines, or time passing (a stall is judged by the clock)
                self._evaluate()
                last_evaluation = time.monotonic()
                next_evaluation = last_evaluation + self.evaluate_interval
            wake = min(next_poll, next_discovery, next_evaluation)
            if self._changed:
                wake = min(wake, last_evaluation + self.evaluate_min_gap)
            timeout = max(0.0, wake - time.monotonic())
            paths = self._drain(timeout)
            if self._stop.is_set():
                break
            now = time.monotonic()
            if now >= next_discovery or any(p is _REDISCOVER for p in paths):
                self._timed("logs", self.fleet.rediscover)
                self._timed("process", lambda: self.host.update_processes(self.fleet, discover=True))
                next_discovery = now + self.rediscover_interval
                next_poll = now + self._poll_every()
                continue
            if paths:
                self._timed("logs", lambda batch=paths: self._poll_paths(batch))
            if now >= next_poll:
                self._timed("logs", self._safety_poll)
                self._timed("process", lambda: self.host.update_processes(self.fleet, discover=False))
                next_poll = now + self._poll_every()

    # While file events announce every change, the poll is only a safety net and runs every 2 s; changes it finds
    # that no event announced (a network mount sends none) bring it back to `poll_interval` for good.
    EVENTS_TRUSTED_POLL_SECONDS = 2.0

    def _poll_every(self) -> float:
        return max(self.poll_interval, self.EVENTS_TRUSTED_POLL_SECONDS) if self._events_trusted else self.poll_interval

    def _safety_poll(self) -> bool:
        changed = self.fleet.poll()
        if changed and self._events_trusted:
            # twice, not once: a line written between the queue's drain and this poll is no proof
            self._unannounced += 1
            if self._unannounced >= 2:
                self._events_trusted = False
                log.info("changes arrive without file events: polling every %.1f s", self.poll_interval)
        return changed

    def _drain(self, timeout: float) -> list:
        try:
            first = self.events.get(timeout=timeout)
        except queue.Empty:
            return []
        items = [first]
        while len(items) < 10000:
            try:
                items.append(self.events.get_nowait())
            except queue.Empty:
                break
        return [p for p in items if p is not None]

    def _poll_paths(self, paths: list) -> bool:
        readers = {}
        unknown = False
        changed = False
        for p in paths:
            path = Path(p)
            if any(part.startswith(".") for part in path.parts[-3:]):
                continue  # hidden folders (an outbox, editor swap files) are never runs
            reader = self.fleet.reader_for(path)
            if reader is None:
                unknown = True  # maybe a new work dir or session
            else:
                readers[id(reader)] = (reader, path)
        for reader, path in readers.values():
            if path.suffix == ".pth" or path.name == "last_checkpoint":
                reader.rescan_checkpoints()
                changed = True
            elif path not in reader.watched_paths() and (path.is_dir() or path.name.endswith((".log", ".log.json"))):
                changed |= reader.refresh()  # a new session (a resume) or console capture
                continue
            changed |= reader.poll()
        if unknown:
            self.events.put_nowait(_REDISCOVER)
        return changed

    def _evaluate(self) -> None:
        """Judge every run, hand the conditions to the notifier (standalone mode), back up best checkpoints."""
        self._changed = False
        if self.notifier is None and not any(r.state.early_stop is not None and r.state.early_stop.triggered
                                             for r in self.fleet.current_readers()):
            return  # nothing to notify and no best checkpoint to back up: the scrapes judge for themselves
        try:
            report = self.status_report()
            if self.notifier is not None:
                self.notifier.handle(report, self.tail_lines)
            for run in report.runs:
                if run.early_stopping is not None and run.early_stopping.triggered:
                    self._backup_best(run)
        except Exception:  # a notification problem must never stop the reading
            log.exception("evaluating conditions for notification failed")

    def _backup_best(self, run: RunReport) -> None:
        """On an early-stop trigger, copy the best checkpoint to a backup name before anything removes it (the
        guide does it by hand: best_pascal_voc_mAP_epoch_2.pth -> stage2_1_backup_ep2.pth)."""
        policy = as_policy_set(self.policy).for_run(run.run)
        best = run.best
        if not policy.early_stop_backup or best is None or not best.checkpoint:
            return
        work_dir = Path(run.work_dir)
        source = work_dir / best.checkpoint
        number = best.epoch if best.epoch is not None else best.iteration
        target = work_dir / f"{run.run.replace('/', '_')}_backup_{'ep' if best.epoch is not None else 'it'}{number}.pth"
        if target.exists() or not source.is_file() or target in self._backups:
            return
        self._backups.add(target)

        def copy() -> None:
            tmp = target.with_suffix(".pth.partial")
            try:
                shutil.copy2(source, tmp)
                os.replace(tmp, target)
                log.info("run %s: early stop triggered; best checkpoint backed up to %s", run.run, target)
            except OSError as exc:
                log.warning("run %s: cannot back up %s (%s)", run.run, source, exc.strerror or exc)
                self._backups.discard(target)

        threading.Thread(target=copy, name="backup", daemon=True).start()

    def _timed(self, collector: str, fn: Callable[[], object]) -> None:
        start = time.perf_counter()
        try:
            self._changed |= bool(fn())
            ok = True
        except Exception:  # the worker must survive anything a file system or a log can throw at it
            log.exception("%s collector failed", collector)
            ok = False
        self.stats.success[collector] = ok
        self.stats.duration_seconds[collector] = time.perf_counter() - start
