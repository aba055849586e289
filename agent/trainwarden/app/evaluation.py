"""The read loop's judgement of every run: conditions to the standalone notifier, best checkpoints to the backup.

A failure here (a bug in a rule, a notifier that raises) is logged and shown as collector_success{collector=
"evaluate"} 0; it never stops the reading, and it is never mistaken for "nothing to notify".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from trainwarden.app.backup import CheckpointBackup
from trainwarden.app.documents import DocumentCache
from trainwarden.ingest.fleet import Fleet
from trainwarden.judge.policy import Policy, PolicySet, as_policy_set
from trainwarden.outputs.metrics import CollectorStats

if TYPE_CHECKING:  # the notifier's modules (hashlib, apprise) load only when one is configured
    from trainwarden.outputs.notify.service import Notifier

if TYPE_CHECKING:  # the lock module is imported by the commands that notify
    from trainwarden.app.run_lock import NotifyGate

log = logging.getLogger("trainwarden.app.evaluation")


class Evaluation:
    def __init__(self, fleet: Fleet, documents: DocumentCache, policy: Policy | PolicySet, notifier: Notifier | None,
                 backup: CheckpointBackup, stats: CollectorStats, tail_lines: Callable[[str, int], list[str]],
                 gate: NotifyGate | None = None) -> None:
        self.fleet = fleet
        self.documents = documents
        self.policies = as_policy_set(policy)
        self.notifier = notifier
        self.backup = backup
        self.stats = stats
        self.tail_lines = tail_lines
        self.gate = gate  # which runs this agent notifies for (one notifier per run per host: app/run_lock.py)

    def __call__(self) -> None:
        if self.notifier is None and not any(r.state.early_stop is not None and r.state.early_stop.triggered
                                             for r in self.fleet.current_readers()):
            return  # nothing to notify and no best checkpoint to back up: the scrapes judge for themselves
        start = time.perf_counter()
        try:
            _, report = self.documents.current()
            if self.notifier is not None:
                mine = self.gate.select(report, self.notifier.tracker) if self.gate is not None else report
                self.notifier.handle(mine, self.tail_lines)
                if self.gate is not None:
                    self.gate.record(self.notifier.tracker)
            for run in report.runs:
                if run.early_stopping is not None and run.early_stopping.triggered:
                    self.backup.request(run, self.policies.for_run(run.run))
            ok = True
        except Exception:  # the reading goes on; the failure is shown, not taken for "nothing to notify"
            log.exception("judging the runs for notification failed")
            ok = False
        self.stats.success["evaluate"] = ok
        self.stats.duration_seconds["evaluate"] = time.perf_counter() - start
