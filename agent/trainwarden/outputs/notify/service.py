"""The standalone notifier: turns the status document's conditions into notifications, queues them in the
outbox, and delivers them from its own thread (delivery never blocks reading logs). Storms are rate-limited per
target: beyond `max_per_minute` (a token bucket: a burst of 5, then one send every 60/max_per_minute seconds), or
when several are due at once (a target back after an outage), messages are combined into one, red first."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from trainwarden.judge.rules.registry import is_host_rule
from trainwarden.model import Condition, Severity, StatusReport, severity_rank
from trainwarden.outputs.notify.message import batch_type, notify_type, render, render_batch, run_facts, urgency
from trainwarden.outputs.notify.outbox import BACKOFF_SECONDS, Outbox
from trainwarden.outputs.notify.targets import SEVERITIES, Target, mask_text
from trainwarden.outputs.notify.tracker import AlertTracker, Event

log = logging.getLogger("trainwarden.notify")
Send = Callable[[Target, str, str, str, str], tuple[bool, str]]  # (target, title, body, severity, apprise type)


class _MaskSecrets(logging.Filter):
    """apprise logs its own failures; a URL in them is replaced by its mask."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__()
        self.urls = urls

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_text(record.getMessage(), self.urls)
        record.args = ()
        return True


def apprise_sender() -> Send:
    import apprise

    cache: dict[str, apprise.Apprise] = {}

    def send(target: Target, title: str, body: str, severity: str, kind: str = "info") -> tuple[bool, str]:
        a = cache.get(target.id)
        if a is None:
            a = apprise.Apprise()
            if target.url.startswith("config:"):
                conf = apprise.AppriseConfig()
                if not conf.add(target.url[len("config:"):]):
                    return False, "cannot read the apprise config file"
                a.add(conf)
            elif not a.add(target.url):
                return False, "apprise cannot use this URL"
            cache[target.id] = a
        tag = severity if target.url.startswith("config:") else None
        result = a.notify(title=title, body=body, notify_type=kind, **({"tag": tag} if tag else {}))
        return (True, "") if bool(result) else (False, "the target did not accept the message")  # bool(), never `is False`

    return send


class Notifier:
    def __init__(self, targets: list[Target], state_dir: Path, host: str | None = None, resolve_after_seconds: float = 120,
                 max_per_minute: int = 20, send: Send | None = None, clock: Callable[[], float] = time.time,
                 log_lines: int = 50) -> None:
        self.targets = {t.id: t for t in targets}
        self.host = host or socket.gethostname()
        self.tracker = AlertTracker(Path(state_dir) / "alerts.json", resolve_after_seconds)
        self.outbox = Outbox(Path(state_dir) / "outbox")
        self.max_per_minute = max_per_minute
        self.send = send
        self.clock = clock
        self.log_lines = log_lines
        self.sent: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
        self.failed: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
        self._bucket: dict[str, tuple[float, float]] = {}  # target id -> (send tokens, when counted)
        self._target_down: dict[str, tuple[int, float]] = {}  # target id -> (failed attempts in a row, next try)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._told_checked: set[str] = set()  # alerts checked against the targets since this start
        apprise_log = logging.getLogger("apprise")
        apprise_log.addFilter(_MaskSecrets([t.url for t in targets]))
        if apprise_log.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
            apprise_log.setLevel(logging.WARNING)  # its "Notifying 1 service(s)" at every send is noise

    # -- from the reader's thread ----------------------------------------------------------------------------------
    def handle(self, report: StatusReport, tail: Callable[[str, int], list[str]]) -> int:
        """Queue notifications for what changed in the report's conditions. Returns how many were queued."""
        now = self.clock()
        runs = {r.run: r for r in report.runs}
        # a hot GPU is one page, the host's: its copies on the runs that use it only colour those runs
        conditions = [c for r in report.runs if not r.history  # a history run is shown, never notified
                      for c in r.conditions if not is_host_rule(c.alert)] + list(report.conditions)
        queued = 0
        events = self.tracker.update(conditions, now)
        for event in events:
            queued += self._queue_event(event, runs, tail)
        queued += self._tell_new_targets(conditions, {e.condition.key for e in events}, runs, tail)
        return queued

    def _queue_event(self, event: Event, runs: dict, tail: Callable[[str, int], list[str]],
                     only: set[str] | None = None) -> int:
        cond = event.condition
        run = runs.get(cond.run or "")
        lines = None
        if event.kind == "firing" and cond.severity == Severity.CRITICAL and run is not None:
            try:
                lines = tail(run.run, self.log_lines)
            except OSError:
                lines = None
        title, body = render(event.kind, cond, run_facts(run) if run else None, self.host, lines, event.at)
        queued = self.queue(event.id, cond.severity.value, {"title": title, "body": body, "kind": event.kind,
                                                            "alert": cond.alert, "run": cond.run}, event.kind, only)
        if event.kind == "firing":
            self.tracker.mark_told(cond.key, {t.id for t in self._takers(cond.severity.value, event.kind, only)})
        return queued

    def _tell_new_targets(self, conditions: list[Condition], fired: set[str], runs: dict,
                          tail: Callable[[str, int], list[str]]) -> int:
        """An alert still active from before this start (the tracker's state) goes to the targets that were never
        told of it: the targets changed (a URL corrected, a phone added). Checked once per alert and start; a
        note (info) is news once and is not repeated."""
        queued = 0
        for cond in conditions:
            key = cond.key
            if key in self._told_checked or key in fired or cond.severity == Severity.INFO:
                continue
            known = self.tracker.active.get(key)
            if known is None or known.get("gone_since") is not None or known.get("adopted"):
                continue  # held back (a hold), in its resolve hold-down, or told by the agent that notified before
            self._told_checked.add(key)
            told = self.tracker.told(key)
            missing = {t.id for t in self._takers(cond.severity.value, "firing")} - (told or set())
            if missing:  # an older state without `told`: the outbox's journal keeps a target from getting it twice
                event = Event("firing", cond, self.clock(), known.get("first_seen"))
                queued += self._queue_event(event, runs, tail, missing)
        return queued

    def _takers(self, severity: str, kind: str, only: set[str] | None = None) -> list[Target]:
        return [t for t in self.targets.values() if t.wants(severity) and (kind != "resolved" or t.resolved)
                and (only is None or t.id in only)]

    def queue(self, message_id: str, severity: str, message: dict, kind: str, only: set[str] | None = None) -> int:
        """Put one message in the outbox for every target that wants it (of `only`, when given); wake the
        delivery thread."""
        now = self.clock()
        queued = 0
        for target in self._takers(severity, kind, only):
            queued += self.outbox.put(message_id, target.id, {**message, "severity": severity}, now)
        if queued:
            self._wake.set()
        return queued

    def _readdress(self, message: dict) -> None:
        """A message queued for a target that is no longer configured (a URL corrected, a target replaced) goes
        to the current targets that take it, once each; only with none is it dropped."""
        fields = {k: message[k] for k in ("title", "body", "kind", "alert", "run") if k in message}
        takers = self._takers(message.get("severity", "info"), message.get("kind", "notice"))
        message_id = message.get("message_id") or message["id"]  # an outbox file from before message_id: its id
        moved = sum(self.outbox.put(message_id, t.id, {**fields, "severity": message.get("severity", "info")},
                                    self.clock()) for t in takers)
        self.outbox.drop(message)
        if takers:
            log.info("%s: its target is no longer configured; queued for %d current target(s)", message["title"], moved)
        else:
            log.warning("dropping %s: its target is no longer configured and no current target takes it",
                        message["title"])

    def notice(self, key: str, severity: str, title: str, body: str, kind: str = "notice") -> int:
        """A message outside the condition tracker (`trainwarden run` restarting a run, an Alertmanager alert)."""
        return self.queue(f"notice|{key}", severity, {"title": title, "body": body, "kind": kind}, kind)

    def flush(self, timeout: float) -> bool:
        """Deliver what is queued, waiting up to `timeout` seconds; True when the outbox is empty."""
        deadline = time.monotonic() + timeout
        while self.queue_length() and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.1)
        return self.queue_length() == 0

    # -- delivery ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.send is None:
            self.send = apprise_sender()
        self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def queue_length(self) -> int:
        return len(self.outbox)

    @property
    def store_write_errors(self) -> int:
        """Writes of the outbox, its journal or the alert state that the disk refused (full, read-only)."""
        return self.outbox.write_errors + self.tracker.save_errors

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                next_due = self.deliver_once()
            except Exception:  # the delivery thread must outlive any target's failure
                log.exception("notification delivery failed")
                next_due = 5.0
            self._wake.wait(timeout=next_due)
            self._wake.clear()

    def deliver_once(self) -> float:
        """Send what is due; return the seconds until something else is due (for the loop's wait)."""
        if self.send is None:
            self.send = apprise_sender()
        now = self.clock()
        self.outbox.retry_writes()
        pending = self.outbox.pending()
        orphans = [m for m in pending if m.get("target") not in self.targets]
        for m in orphans:  # the config no longer has their target: the current ones get what it had
            self._readdress(m)
        if orphans:
            pending = self.outbox.pending()
        by_target: dict[str, list[dict]] = {}
        for m in pending:
            if m.get("next_attempt", 0) <= now:
                by_target.setdefault(m["target"], []).append(m)
        for target_id, messages in by_target.items():
            target = self.targets.get(target_id)
            if target is None:  # written meanwhile by an older process on this state: readdressed next time
                continue
            if self._target_down.get(target_id, (0, 0.0))[1] > now:
                continue  # a target that is down is tried on its own back-off, whatever new arrives meanwhile
            self._deliver(target, messages, now)
        pending = self.outbox.pending()
        ready_at = {t: max(self._target_down.get(t, (0, 0.0))[1], now + self._next_token_in(t, now))
                    for t in {m.get("target") for m in pending}}  # a target down, or out of send tokens
        later = [max(m.get("next_attempt", now), ready_at[m.get("target")]) - now for m in pending]
        return max(0.2, min(later)) if later else 60.0

    # Sends per target come from a token bucket: a burst of BURST at once, then one every 60 / max_per_minute
    # seconds. A storm is therefore combined into a message every few seconds (not held for a whole minute once a
    # minute's budget is spent), and red goes first in it.
    BURST = 5

    def _tokens(self, target_id: str, now: float) -> float:
        rate = max(1, self.max_per_minute) / 60.0
        tokens, since = self._bucket.get(target_id, (float(min(self.BURST, max(1, self.max_per_minute))), now))
        tokens = min(float(min(self.BURST, max(1, self.max_per_minute))), tokens + (now - since) * rate)
        self._bucket[target_id] = (tokens, now)
        return tokens

    def _take_token(self, target_id: str, now: float) -> None:
        tokens, _ = self._bucket[target_id]
        self._bucket[target_id] = (tokens - 1, now)

    def _next_token_in(self, target_id: str, now: float) -> float:
        tokens = self._tokens(target_id, now)
        return 0.0 if tokens >= 1 else (1 - tokens) * 60.0 / max(1, self.max_per_minute)

    def _deliver(self, target: Target, messages: list[dict], now: float) -> None:
        budget = int(self._tokens(target.id, now))
        if budget == 0:
            return
        messages = sorted(messages, key=urgency)
        if len(messages) > 3 or len(messages) > budget:  # a storm or a backlog: one combined message
            batch = messages[:50]
            title, body = render_batch(batch)
            severity = min((m["severity"] for m in batch), key=severity_rank)
            self._send(target, batch, title, body, severity, batch_type(batch), now)
            return
        for m in messages:
            if not self._send(target, [m], m["title"], m["body"], m["severity"], notify_type(m.get("kind"), m["severity"]),
                              now):
                return  # the target is down: the rest waits for the back-off

    def _send(self, target: Target, batch: list[dict], title: str, body: str, severity: str, kind: str,
              now: float) -> bool:
        try:
            ok, error = self.send(target, title, body, severity, kind)
        except Exception as exc:  # a broken plugin is a failed delivery, not a dead thread
            ok, error = False, f"{type(exc).__name__}: {mask_text(str(exc), [target.url])}"
        self._take_token(target.id, now)
        for m in batch:
            if ok:
                self.outbox.delivered(m)
                self.sent[m["severity"]] = self.sent.get(m["severity"], 0) + 1
            else:
                self.outbox.failed(m, now, error)
                self.failed[m["severity"]] = self.failed.get(m["severity"], 0) + 1
        failures = self._target_down.get(target.id, (0, 0.0))[0]
        if ok:
            if failures:
                log.info("notifications reach %s again (after %d failed attempts)", target.name, failures)
                del self._target_down[target.id]
        else:
            failures += 1
            self._target_down[target.id] = (failures, now + BACKOFF_SECONDS[min(failures - 1, len(BACKOFF_SECONDS) - 1)])
            if failures == 1:  # once per outage; every attempt is counted in trainwarden_notifications_failed_total
                log.warning("notification to %s failed (%s): retried with back-off, up to once a minute", target.name,
                            error)
        return ok
