"""The agent: wires the read loop, the file events, the documents, the checkpoint backup, the notifier and the
HTTP server together. Nothing runs and no port is bound until `start()`; `stop()` ends what `start()` began.

Threads: the read loop (the only reader of files, processes and GPUs), the file observer (only enqueues paths),
the HTTP server (only takes documents), the backup (only copies checkpoints) and the notifier's delivery.

With a notifier the loop reads each write as its file event arrives (a red page goes out within moments); without
one it reads on demand: before each report is served (a scrape, /api/runs, the page) and every few seconds
(app/read_loop.py). `read_on_demand` overrides that choice.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from trainwarden.app.backup import CheckpointBackup
from trainwarden.app.documents import DocumentCache, GpuSampler
from trainwarden.app.evaluation import Evaluation
from trainwarden.app.file_events import FileEvents
from trainwarden.app.read_loop import ReadLoop
from trainwarden.app.scrape import MetricsCache
from trainwarden.app.web import WebApp, make_server
from trainwarden.ingest.files.discover import newest_log
from trainwarden.ingest.files.lines import last_lines
from trainwarden.ingest.fleet import Fleet
from trainwarden.ingest.host.sources import HostSources
from trainwarden.judge.policy import DEFAULT_POLICY, Policy, PolicySet
from trainwarden.model import StatusReport
from trainwarden.outputs.metrics import CollectorStats, make_registry

if TYPE_CHECKING:  # the notifier's modules (hashlib, apprise) load only when one is configured
    from trainwarden.outputs.notify.service import Notifier

if TYPE_CHECKING:  # the lock module is imported by the commands that notify
    from trainwarden.app.run_lock import NotifyGate

log = logging.getLogger("trainwarden.app.agent")


def _inside(path: Path, folder: Path) -> bool:
    """`path`, links resolved, lies in `folder` (itself resolved: a work dir that is a link to a data disk is fine)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


class Agent:
    EVENT_QUEUE_SIZE = 100_000  # paths waiting for the read loop; beyond it events are counted as dropped
    CATCH_UP_SECONDS = 2.0  # a request waits this long for the read loop (busy with a cold scan: served as read so far)

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
        gpu_interval: float = 1.0,
        notify_gate: NotifyGate | None = None,
        read_on_demand: bool | None = None,
        file_events_backend: str = "auto",
    ) -> None:
        self.fleet = Fleet(roots)
        self.host = host_sources if host_sources is not None else HostSources()
        self.notifier = notifier
        self.policy = policy
        self.listen = (host, port)
        self.stats = CollectorStats(notifier=notifier)
        events: queue.Queue = queue.Queue(maxsize=self.EVENT_QUEUE_SIZE)
        on_demand = notifier is None if read_on_demand is None else read_on_demand
        self.file_events = FileEvents(self.fleet.roots, events, self.stats, enabled=use_watchdog,
                                      on_demand=on_demand, backend=file_events_backend)
        self.gpus = GpuSampler(self.host, self.stats)
        # documents are judged again at least once per `evaluate_interval` (a stall is the clock passing a deadline)
        self.documents = DocumentCache(self.fleet, policy, clock, self.gpus, bucket_seconds=evaluate_interval)
        self.backup = CheckpointBackup(self.stats)
        self.notify_gate = notify_gate
        evaluation = Evaluation(self.fleet, self.documents, policy, notifier, self.backup, self.stats, self.tail_lines,
                                notify_gate)
        self.reader = ReadLoop(self.fleet, self.host, self.gpus, events, self.file_events, self.stats, evaluation,
                               poll_interval=poll_interval, rediscover_interval=rediscover_interval,
                               evaluate_interval=evaluate_interval, evaluate_min_gap=evaluate_min_gap,
                               gpu_interval=gpu_interval, on_demand=on_demand)
        self.registry = make_registry(self.status_report, self.stats)  # the same families, for in-process use
        self.metrics = MetricsCache(self.documents, self.stats, catch_up=self.catch_up)
        self.server = None  # bound by start()
        self._stopping = threading.Event()
        self._started: list[Callable[[], None]] = []  # how to stop what start() began, in reverse order

    @property
    def ready(self) -> threading.Event:
        """Set once the first discovery (the cold scans) is read and judged."""
        return self.reader.ready

    @property
    def address(self) -> tuple[str, int]:
        if self.server is None:
            raise RuntimeError("the agent is not started: no address yet")
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    @property
    def poll_seconds(self) -> float:
        """The safety poll's current period (longer while file events are trusted)."""
        return self.reader.poll_seconds

    @property
    def rediscover_seconds(self) -> float:
        return self.reader.rediscover_seconds

    @property
    def reads_on_demand(self) -> bool:
        return self.reader.on_demand

    # -- reading (any thread) ----------------------------------------------------------------------------------
    def catch_up(self) -> None:
        """Reading on demand: what the files hold now is read before a report is built (else nothing to do)."""
        self.reader.catch_up(self.CATCH_UP_SECONDS)

    def status_report(self) -> StatusReport:
        self.catch_up()
        return self.documents.current()[1]

    def status_document(self) -> dict:
        """The status report as JSON-ready data (what /api/runs serves)."""
        self.catch_up()
        return self.documents.document()

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

    def refresh(self, timeout: float = 10.0) -> bool:
        """Read everything written so far and judge it (notifications queued, backups requested); returns once that
        is done. False if it was not done within `timeout` (or the agent is not running)."""
        return self.reader.refresh(timeout)

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the port (an OSError, such as the port in use, leaves nothing running), then start every thread."""
        if self.server is not None:
            raise RuntimeError("the agent is already started")
        app = WebApp(metrics=self.metrics.body, status=self.status_report, document=self.status_document, tail=self.tail)
        self.server = make_server(app, *self.listen)
        serving = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)
        serving.start()
        self._started.append(self._stop_server)
        if self.notifier is not None:
            self.notifier.start()
            self._started.append(self.notifier.stop)
        self.backup.start()
        self._started.append(self.backup.stop)
        self.reader.start()
        self._started.append(self.reader.stop)
        self.file_events.start()
        self._started.append(self.file_events.stop)

    def _stop_server(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def request_stop(self) -> None:
        """Ask `wait()` to return (from a signal handler: no locks, no joins)."""
        self._stopping.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Until `request_stop()` or `stop()` (True), or `timeout` seconds (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            # in slices: a signal handler runs between them on every platform (a lock wait on Windows is not interrupted)
            if self._stopping.wait(max(0.0, left)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def stop(self) -> None:
        """Stop what `start()` began, newest first (safe to call twice, or without `start()`)."""
        self._stopping.set()
        while self._started:
            self._started.pop()()
        if self.notify_gate is not None:
            self.notify_gate.close()  # the next agent of these runs notifies for them at once
        self.host.close()
