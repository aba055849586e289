"""Which conditions are new, still active or gone: events to notify, once each, with flapping held down.

State persists in a small JSON file (written atomically) so an agent restart neither repeats a notification nor
forgets one: a condition already notified stays quiet while active, and its resolved notice comes when it goes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trainwarden.outputs.notify.outbox import atomic_write


@dataclass
class Event:
    kind: str  # "firing" or "resolved"
    condition: dict
    at: float

    @property
    def id(self) -> str:
        return f"{self.kind}|{self.condition['key']}|{self.condition.get('first_seen')}"


class AlertTracker:
    def __init__(self, path: Path | None, resolve_after_seconds: float = 120.0, info_max_age_seconds: float = 3600.0):
        self.path = path
        self.resolve_after = resolve_after_seconds
        self.info_max_age = info_max_age_seconds
        self.active: dict[str, dict] = {}  # key -> condition (with first_seen, gone_since)
        self.save_errors = 0
        self._unsaved = False
        if path is not None and path.exists():
            try:
                self.active = json.loads(path.read_text(encoding="utf-8")).get("active", {})
            except (OSError, ValueError):
                self.active = {}

    def update(self, conditions: list[dict], now: float) -> list[Event]:
        events: list[Event] = []
        changed = False
        current = {c["key"]: c for c in conditions}
        for key, cond in current.items():
            known = self.active.get(key)
            if known is None:
                cond = {**cond, "first_seen": now, "gone_since": None}
                self.active[key] = cond
                changed = True
                stale_info = cond["severity"] == "info" and cond.get("since") and now - cond["since"] > self.info_max_age
                if not stale_info:  # an old run's "finished" found at start-up is not news
                    events.append(Event("firing", cond, now))
                continue
            if known.get("gone_since") is not None:
                changed = True  # flapped back within the hold-down: no new notice
            known.update({k: v for k, v in cond.items() if k != "first_seen"}, gone_since=None)
        for key, known in list(self.active.items()):
            if key in current:
                continue
            if known.get("gone_since") is None:
                known["gone_since"] = now
                changed = True
            if now - known["gone_since"] >= self.resolve_after:
                del self.active[key]
                changed = True
                if known["severity"] != "info":
                    events.append(Event("resolved", known, now))
        if changed or self._unsaved:
            self.save()
        return events

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
