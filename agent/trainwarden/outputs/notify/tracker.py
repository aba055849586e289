"""Which conditions are new, still active or gone: events to notify, once each, with flapping held down and a
condition's own hold respected (a hot GPU pages only after a minute, as its Prometheus rule's `for:` does).

State persists in a small JSON file (written atomically) so an agent restart neither repeats a notification nor
forgets one: a condition already notified stays quiet while active, and its resolved notice comes when it goes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trainwarden.model import Condition, Severity
from trainwarden.model.codec import from_plain, to_plain
from trainwarden.outputs.notify.outbox import atomic_write


@dataclass(frozen=True)
class Event:
    kind: str  # "firing" or "resolved"
    condition: Condition
    at: float
    first_seen: float | None

    @property
    def id(self) -> str:
        return f"{self.kind}|{self.condition.key}|{self.first_seen}"


class AlertTracker:
    def __init__(self, path: Path | None, resolve_after_seconds: float = 120.0, info_max_age_seconds: float = 3600.0):
        self.path = path
        self.resolve_after = resolve_after_seconds
        self.info_max_age = info_max_age_seconds
        self.active: dict[str, dict] = {}  # key -> plain condition with first_seen and gone_since (what is saved)
        self.pending: dict[str, float] = {}  # key -> when a condition with a hold was first seen (not saved)
        self.save_errors = 0
        self._unsaved = False
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8")).get("active", {})
                self.active = {k: v for k, v in loaded.items() if isinstance(v, dict)} if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self.active = {}

    def _held(self, cond: Condition, now: float) -> bool:
        """A condition with a hold counts once it has been seen for that long without a gap."""
        if cond.hold_seconds <= 0:
            return True
        since = self.pending.setdefault(cond.key, now)
        return now - since >= cond.hold_seconds

    def update(self, conditions: list[Condition], now: float) -> list[Event]:
        events: list[Event] = []
        changed = False
        current = {c.key: c for c in conditions}
        for key in [k for k in self.pending if k not in current]:
            del self.pending[key]  # gone before its hold ran out: never paged
        for key, cond in current.items():
            known = self.active.get(key)
            if known is None:
                if not self._held(cond, now):
                    continue
                self.active[key] = {**to_plain(cond), "first_seen": now, "gone_since": None}
                changed = True
                stale_info = cond.severity == Severity.INFO and cond.since and now - cond.since > self.info_max_age
                if not stale_info:  # an old run's "finished" found at start-up is not news
                    events.append(Event("firing", cond, now, now))
                continue
            if known.get("gone_since") is not None:
                changed = True  # flapped back within the hold-down: no new notice
            known.update({k: v for k, v in to_plain(cond).items()}, gone_since=None)
        for key, known in list(self.active.items()):
            if key in current:
                continue
            if known.get("gone_since") is None:
                known["gone_since"] = now
                changed = True
            if now - known["gone_since"] >= self.resolve_after:
                del self.active[key]
                changed = True
                if known.get("severity") != Severity.INFO.value:
                    events.append(Event("resolved", from_plain(Condition, known), now, known.get("first_seen")))
        if changed or self._unsaved:
            self.save()
        return events

    def told(self, key: str) -> set[str] | None:
        """The ids (hashes) of the targets an active alert was queued for; None when not recorded (an older state)."""
        known = self.active.get(key)
        told = known.get("told") if known else None
        return set(told) if isinstance(told, list) else None

    def mark_told(self, key: str, target_ids: set[str]) -> None:
        known = self.active.get(key)
        if known is not None and not target_ids <= set(known.get("told") or ()):
            known["told"] = sorted(target_ids | set(known.get("told") or ()))
            self.save()

    # -- one notifier per run (app/run_lock.py): what another agent notified is handed over through these ----------
    def entries(self, run: str) -> dict[str, dict]:
        """The run's active conditions as saved (what was notified and not yet resolved)."""
        return {k: dict(v) for k, v in self.active.items() if v.get("run") == run}

    def adopt(self, entries: dict[str, dict]) -> None:
        """Conditions another agent notified: active here too, without a notice (their resolution comes from here)."""
        # `adopted`: the other agent told its targets; a hand-over is not a change of targets (nothing is resent)
        new = {k: {**v, "adopted": True} for k, v in entries.items() if k not in self.active and isinstance(v, dict)}
        if new:
            self.active.update(new)
            self.save()

    def forget(self, run: str) -> None:
        """Another agent notifies for the run now: its conditions leave without a resolved notice from here."""
        gone = [k for k, v in self.active.items() if v.get("run") == run]
        for key in gone:
            del self.active[key]
            self.pending.pop(key, None)
        if gone:
            self.save()

    def save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, {"active": self.active})
        except OSError:
            # a full disk: the state stays in memory (events were already returned) and is written at the next update
            self.save_errors += 1
            self._unsaved = True
            return
        self._unsaved = False
