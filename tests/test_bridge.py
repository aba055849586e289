"""The bridge on its own: Alertmanager's webhook JSON in, apprise messages out; retries dropped, repeats kept."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from sinks import HttpSink

from trainwarden.app.bridge import REPEAT_WINDOW_SECONDS, Bridge, alert_event
from trainwarden.outputs.notify.service import Notifier
from trainwarden.outputs.notify.targets import Target

ALERT = {
    "status": "firing",
    "labels": {"alertname": "TrainingLossExplosion", "severity": "critical", "run": "exp", "instance": "gpu1:9841",
               "job": "trainwarden"},
    "annotations": {"summary": "exp on gpu1:9841: loss 1.3500 above the limit", "description": "Resume from the newest.",
                    "runbook": "docs/contracts/alerts.md#traininglossexplosion"},
    "startsAt": "2026-11-26T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "abc123",
}


def payload(*alerts, status="firing"):
    return {"version": "4", "status": status, "receiver": "bridge-critical", "groupKey": "{}:{}", "alerts": list(alerts)}


@pytest.fixture
def bridge(tmp_path):
    sink = HttpSink()
    b = Bridge(Notifier([Target(sink.url())], tmp_path / "state", host="bridge-host"), "tok", "127.0.0.1", 0)
    threading.Thread(target=b.server.serve_forever, daemon=True).start()
    yield b, sink
    b.server.shutdown()
    b.server.server_close()
    sink.close()


def post(b, body, token="tok"):
    req = urllib.request.Request(f"http://127.0.0.1:{b.address[1]}/alerts", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_firing_and_resolved_are_delivered_once_each(bridge):
    b, sink = bridge
    assert post(b, payload(ALERT)) == {"queued": 1}
    assert post(b, payload(ALERT)) == {"queued": 0}  # Alertmanager retrying
    resolved = {**ALERT, "status": "resolved", "endsAt": "2026-11-26T10:05:00Z"}
    assert post(b, payload(resolved, status="resolved")) == {"queued": 1}
    b.notifier.deliver_once()
    assert sink.titles() == ["[RED] TrainingLossExplosion - exp on gpu1:9841",
                             "[RESOLVED] TrainingLossExplosion - exp on gpu1:9841"]
    text = json.dumps(sink.received)
    assert "loss 1.3500 above the limit" in text and "Resume from the newest." in text


def test_a_repeat_after_the_window_pages_again():
    first = alert_event(ALERT, 1_795_000_000.0)
    retry = alert_event(ALERT, 1_795_000_000.0 + 30)
    repeat = alert_event(ALERT, 1_795_000_000.0 + 30 * 60)
    assert first[0] == retry[0] != repeat[0]
    assert REPEAT_WINDOW_SECONDS <= 600


def test_unauthorized_and_invalid_webhooks(bridge):
    b, _ = bridge
    with pytest.raises(urllib.error.HTTPError) as err:
        post(b, payload(ALERT), token="wrong")
    assert err.value.code == 401
    req = urllib.request.Request(f"http://127.0.0.1:{b.address[1]}/alerts", data=b"not json",
                                 headers={"Authorization": "Bearer tok"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 400
    assert b.stats.webhooks == {"accepted": 0, "unauthorized": 1, "invalid": 1}


def test_alertmanager_timestamps_with_nanoseconds():
    from trainwarden.app.bridge import _timestamp
    assert _timestamp("2026-11-26T10:00:00.123456789Z") == pytest.approx(_timestamp("2026-11-26T10:00:00Z") + 0.123456)
    assert _timestamp("0001-01-01T00:00:00Z") is None and _timestamp("garbage") is None
