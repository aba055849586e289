"""`trainwarden bridge`: receives Alertmanager webhooks and delivers them through apprise, with the standalone
mode's message format, severity routing, outbox and retries.

- Authenticated by a shared secret (`Authorization: Bearer <token>`), compared in constant time.
- Idempotent: Alertmanager retries a webhook it thinks failed; an alert (fingerprint, status, start) is queued
  once per five minutes, so a retry is dropped while Alertmanager's own repeats (`repeat_interval`) still page.
- Exports its own counters on /metrics.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from trainwarden import __version__
from trainwarden.model import Condition, Severity
from trainwarden.outputs.exposition import choose as choose_encoder
from trainwarden.outputs.metrics import notifier_families
from trainwarden.outputs.notify.message import render
from trainwarden.outputs.notify.service import Notifier

log = logging.getLogger("trainwarden.app.bridge")
REPEAT_WINDOW_SECONDS = 300
MAX_BODY = 4 << 20


def _timestamp(text: object) -> float | None:
    if not isinstance(text, str) or not text or text.startswith("0001-"):
        return None
    # Alertmanager writes nanoseconds; Python before 3.11 reads at most microseconds
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError, OSError):  # 9999-12-31 with an offset is past what a timestamp holds
        return None


def alert_event(alert: dict, received: float) -> tuple[str, str, Condition] | None:
    """(message id, kind, condition) of one Alertmanager alert, or None when it is not one."""
    labels = alert.get("labels")
    annotations = alert.get("annotations")
    if not isinstance(labels, dict):
        return None
    labels = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in labels.items()}
    annotations = {str(k): v for k, v in annotations.items() if isinstance(v, str)} if isinstance(annotations, dict) else {}
    name = labels.get("alertname")
    if not name:
        return None
    status = "resolved" if alert.get("status") == "resolved" else "firing"
    since = _timestamp(alert.get("startsAt"))
    window = math.floor((received - (since or 0)) / REPEAT_WINDOW_SECONDS) if status == "firing" else 0
    fingerprint = alert.get("fingerprint") or json.dumps(labels, sort_keys=True)
    condition = Condition(
        alert=name,
        severity=Severity.of(labels.get("severity", "warning")),
        summary=annotations.get("summary") or name,
        description=annotations.get("description") or "",
        runbook=annotations.get("runbook_url") or annotations.get("runbook"),  # the rules carry runbook_url
        since=since,
        run=labels.get("run"),
        labels=labels,
    )
    return f"am|{fingerprint}|{status}|{alert.get('startsAt')}|{window}", status, condition


class BridgeStats(Collector):
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.webhooks: dict[str, int] = {"accepted": 0, "unauthorized": 0, "invalid": 0}
        self.alerts: dict[str, int] = {"queued": 0, "duplicate": 0}

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("trainwarden_build_info", "trainwarden version (always 1).", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        hooks = CounterMetricFamily("trainwarden_bridge_webhooks", "Webhooks received, by result.", labels=["result"])
        for k, v in sorted(self.webhooks.items()):
            hooks.add_metric([k], v)
        yield hooks
        alerts = CounterMetricFamily("trainwarden_bridge_alerts", "Alerts received, queued or dropped as retries.",
                                     labels=["result"])
        for k, v in sorted(self.alerts.items()):
            alerts.add_metric([k], v)
        yield alerts
        yield from notifier_families(self.notifier)


class Bridge:
    def __init__(self, notifier: Notifier, token: str, host: str = "127.0.0.1", port: int = 9842) -> None:
        if not token:
            raise ValueError("the bridge needs a token: an open webhook would let anyone page the user")
        self.notifier = notifier
        self.token = token
        self.stats = BridgeStats(notifier)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.stats)
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def receive(self, payload: dict) -> int:
        """Queue the alerts of one webhook; returns how many were new."""
        now = time.time()
        queued = 0
        alerts = payload.get("alerts")
        for alert in alerts if isinstance(alerts, list) else []:
            event = alert_event(alert, now) if isinstance(alert, dict) else None
            if event is None:
                continue
            message_id, kind, condition = event
            title, body = render(kind, condition, None, condition.labels.get("instance") or self.notifier.host,
                                 resolved_at=_timestamp(alert.get("endsAt")) if kind == "resolved" else None)
            new = self.notifier.notice(message_id, condition.severity.value, title, body, kind=kind)
            self.stats.alerts["queued" if new else "duplicate"] += 1
            queued += bool(new)
        return queued

    def _authorized(self, header: str | None) -> bool:
        return bool(header) and hmac.compare_digest(header.encode(), f"Bearer {self.token}".encode())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            server_version = f"trainwarden-bridge/{__version__}"

            def log_message(self, format: str, *args) -> None:
                log.debug("%s %s", self.address_string(), format % args)

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                    self._send(200, encoder(bridge.registry), ctype)
                elif self.path == "/healthz":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8")
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] not in ("/alerts", "/"):
                    self._send(404, b'{"error": "not found"}')
                    return
                if not bridge._authorized(self.headers.get("Authorization")):
                    bridge.stats.webhooks["unauthorized"] += 1
                    self._send(401, b'{"error": "unauthorized"}')
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY:  # never read "until the end" of a connection held open
                    bridge.stats.webhooks["invalid"] += 1
                    self.close_connection = True
                    self._send(413 if length > MAX_BODY else 400, b'{"error": "a Content-Length up to 4 MiB is needed"}')
                    return
                try:
                    payload = json.loads(self.rfile.read(length))
                    if not isinstance(payload, dict):
                        raise ValueError("not an object")
                except (ValueError, RecursionError):
                    bridge.stats.webhooks["invalid"] += 1
                    self._send(400, b'{"error": "expected an Alertmanager webhook (JSON)"}')
                    return
                queued = bridge.receive(payload)
                bridge.stats.webhooks["accepted"] += 1
                self._send(200, json.dumps({"queued": queued}).encode())

        return Handler

    def serve(self) -> None:
        self.notifier.start()
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.notifier.stop()


def serve_bridge(cfg, targets, token: str, host: str, port: int) -> None:
    """Run the bridge until SIGINT/SIGTERM, then deliver what is queued (up to 10 s) and stop."""
    import signal
    import threading

    from trainwarden.app.config import default_state_dir
    notifier = Notifier(targets, (cfg.notify.state_dir or default_state_dir()) / "bridge", cfg.notify.host,
                        max_per_minute=cfg.notify.max_per_minute)
    bridge = Bridge(notifier, token, host, port)

    def stop(signum, frame):
        threading.Thread(target=bridge.server.shutdown, daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, stop)
        except (ValueError, OSError):
            pass
    log.info("trainwarden bridge listening on http://%s:%d/alerts; delivering to %s", host, bridge.address[1],
             ", ".join(t.name for t in targets))
    try:
        bridge.serve()
    finally:
        bridge.server.server_close()
        notifier.flush(timeout=10)
        notifier.stop()
