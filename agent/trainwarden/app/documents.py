"""The status document, rebuilt only when its version moves, and the GPU readings it is built from.

A document's version is what it was built from: every run's state version (and name), the version of the GPU
reading, and the clock's bucket of `bucket_seconds` (judgements depend on the time: a stall is the clock passing
a deadline, so the document is judged again at least once a bucket). While the version holds, every request
(a scrape, the page, the notifier's evaluation) gets the same document without building anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from trainwarden.ingest.fleet import Fleet
from trainwarden.ingest.host.nvml import GpuReading
from trainwarden.ingest.host.sources import HostSources
from trainwarden.judge.policy import Policy, PolicySet
from trainwarden.model import StatusReport
from trainwarden.outputs.metrics import CollectorStats
from trainwarden.outputs.status import document, status_report

log = logging.getLogger("trainwarden.app.documents")


class GpuSampler:
    """GPU readings taken by the read loop every few seconds, not at each request: a scrape never waits on NVML.
    `version` moves only when a reading differs from the one before it (GPUs at rest, or the benchmarks' fake
    ones, leave the document unchanged)."""

    def __init__(self, host: HostSources, stats: CollectorStats) -> None:
        self.host = host
        self.stats = stats
        self._lock = threading.Lock()
        self._reading: GpuReading | None = None
        self._version = 0

    def sample(self) -> bool:
        """Read the GPUs now. True if the reading differs from the last one."""
        start = time.perf_counter()
        try:
            reading = self.host.sample_gpus()
        except Exception as exc:  # the facade reports NVML's errors itself; anything else must not end the loop
            log.exception("reading the GPUs failed")
            reading = GpuReading(ok=False, error=f"{type(exc).__name__}: {exc}",
                                 duration_seconds=time.perf_counter() - start)
        self.stats.success["gpu"] = reading.ok
        self.stats.duration_seconds["gpu"] = reading.duration_seconds
        with self._lock:
            old = self._reading
            changed = old is None or (old.gpus, old.ok, old.error) != (reading.gpus, reading.ok, reading.error)
            self._reading = reading
            if changed:
                self._version += 1
        return changed

    def latest(self) -> tuple[int, GpuReading]:
        """(version, reading). The first call samples when nothing has yet (an agent used before `start()`)."""
        with self._lock:
            reading = self._reading
        if reading is None:
            self.sample()
        with self._lock:
            return self._version, self._reading


class DocumentCache:
    def __init__(self, fleet: Fleet, policy: Policy | PolicySet, clock: Callable[[], float], gpus: GpuSampler,
                 bucket_seconds: float) -> None:
        self.fleet = fleet
        self.policy = policy
        self.clock = clock
        self.gpus = gpus
        self.bucket_seconds = max(bucket_seconds, 0.001)
        self._lock = threading.Lock()  # one build at a time: concurrent requests wait for it and reuse it
        self._cached: tuple[tuple, StatusReport] | None = None
        self._plain: tuple[tuple, dict] | None = None  # the JSON-ready form of the cached report, made on demand
        self.builds = 0  # documents built so far: a request that reused one did not add to it

    def current(self) -> tuple[tuple, StatusReport]:
        """(version, report): the cached report while the version holds, else a new one."""
        with self._lock:
            gpu_version, reading = self.gpus.latest()
            now = self.clock()
            # taken before the snapshots: a run that changes during the build makes the next request build again
            runs = tuple((id(r), r.state.name, r.state.version) for r in self.fleet.current_readers())
            version = (runs, gpu_version, int(now // self.bucket_seconds))
            if self._cached is not None and self._cached[0] == version:
                return self._cached
            report = status_report(self.fleet.snapshots(), self.policy, now, reading.gpus, reading.error)
            self._cached = (version, report)
            self.builds += 1
            return self._cached

    def document(self) -> dict:
        """The current report as JSON-ready data (/api/runs), converted once per version."""
        version, report = self.current()
        with self._lock:
            if self._plain is None or self._plain[0] != version:
                self._plain = (version, document(report))
            return self._plain[1]
