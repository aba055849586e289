"""On an early-stop trigger, the best checkpoint copied to a backup name before anything removes it (the guide
does it by hand: best_pascal_voc_mAP_epoch_2.pth -> stage2_1_backup_ep2.pth).

Copies run one at a time on the backup's own thread, started and stopped with the agent, so a large checkpoint
never holds up the read loop and a copy in progress is waited for at shutdown. A failed copy is logged, shown as
collector_success{collector="backup"} 0, and tried again at the next evaluation.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from pathlib import Path

from trainwarden.judge.policy import Policy
from trainwarden.model import RunReport
from trainwarden.outputs.metrics import CollectorStats

log = logging.getLogger("trainwarden.app.backup")


def backup_path(run: RunReport) -> tuple[Path, Path] | None:
    """(best checkpoint, its backup name) for a run of the status report, or None when it names no best one."""
    best = run.best
    if best is None or not best.checkpoint:
        return None
    work_dir = Path(run.work_dir)
    by_epoch = best.epoch is not None
    number = best.epoch if by_epoch else best.iteration
    name = f"{run.run.replace('/', '_')}_backup_{'ep' if by_epoch else 'it'}{number}.pth"
    return work_dir / best.checkpoint, work_dir / name


class CheckpointBackup:
    SHUTDOWN_WAIT_SECONDS = 60.0  # a copy in progress at shutdown: waited for this long, then left as .partial

    def __init__(self, stats: CollectorStats) -> None:
        self.stats = stats
        self._queue: queue.Queue = queue.Queue()
        self._requested: set[Path] = set()  # backups queued, in progress or done in this agent's life
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def request(self, run: RunReport, policy: Policy) -> Path | None:
        """Queue the backup of the run's best checkpoint if the policy wants it and it is not made yet."""
        paths = backup_path(run) if policy.early_stop_backup else None
        if paths is None:
            return None
        source, target = paths
        with self._idle:
            if target in self._requested or target.exists() or not source.is_file():
                return None
            self._requested.add(target)
            self._pending += 1
        self._queue.put((run.run, source, target))
        return target

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every requested copy is done (or failed). True if none is left."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="backup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout=self.SHUTDOWN_WAIT_SECONDS)
        self._thread = None

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            run, source, target = item
            ok = self._copy(run, source, target)
            with self._idle:
                if not ok:
                    self._requested.discard(target)  # tried again at the next evaluation
                self._pending -= 1
                self._idle.notify_all()

    def _copy(self, run: str, source: Path, target: Path) -> bool:
        start = time.perf_counter()
        tmp = target.with_suffix(".pth.partial")
        try:
            shutil.copy2(source, tmp)
            os.replace(tmp, target)
            log.info("run %s: early stop triggered; best checkpoint backed up to %s", run, target)
            ok = True
        except OSError as exc:
            log.warning("run %s: cannot back up %s (%s)", run, source, exc.strerror or exc)
            ok = False
        self.stats.success["backup"] = ok
        self.stats.duration_seconds["backup"] = time.perf_counter() - start
        return ok
