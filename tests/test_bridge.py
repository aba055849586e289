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


# -- bridged messages carry what standalone ones carry (issue 12, finding 13) -------------------------------------
P = " - mmengine - INFO - "


@pytest.fixture
def agent_of_a_red_run(tmp_path):
    """A real agent watching a run whose loss went nan, with a checkpoint: what Prometheus' `instance` names."""
    import time

    from conftest import wait_for

    from trainwarden.app.agent import Agent

    root = tmp_path / "work_dirs"
    session = root / "exp" / "20251111_180600"
    session.mkdir(parents=True)
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    (session / "20251111_180600.log").write_text("".join(
        f"{now}{P}Epoch(train)  [1][{it:>4}/1000]  lr: 4.0000e-05  eta: 0:10:00  time: 0.4567  data_time: 0.0123  "
        f"memory: 5432  loss: {loss}  loss_cls: {loss}\n" for it, loss in ((50, "0.3000"), (100, "nan"))), encoding="utf-8")
    (root / "exp" / "epoch_1.pth").write_bytes(b"x")
    agent = Agent([root], "127.0.0.1", 0, poll_interval=0.2, rediscover_interval=0.5)
    agent.start()
    try:
        assert agent.ready.wait(20)
        wait_for(lambda: any(c["alert"] == "TrainingLossNotFinite" for r in agent.status_document()["runs"]
                             for c in r["conditions"]), timeout=20)
        yield agent, root / "exp"
    finally:
        agent.stop()


def nan_alert(instance: str, **annotations) -> dict:
    return {"status": "firing",
            "labels": {"alertname": "TrainingLossNotFinite", "severity": "critical", "run": "exp", "instance": instance,
                       "job": "trainwarden"},
            "annotations": {"summary": "exp: loss is nan/inf", "description": "The logged loss is not finite.",
                            **annotations},
            "startsAt": "2026-11-26T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": f"nan-{instance}"}


def test_a_bridged_red_carries_the_agents_log_tail_checkpoint_and_resume_command(bridge, agent_of_a_red_run):
    b, sink = bridge
    agent, work_dir = agent_of_a_red_run
    alert = nan_alert(f"127.0.0.1:{agent.address[1]}", runbook="docs/contracts/alerts.md#traininglossnotfinite",
                      runbook_url="https://github.com/example/trainwarden/blob/main/docs/contracts/alerts.md#x")
    assert post(b, payload(alert)) == {"queued": 1}
    b.notifier.deliver_once()
    message = sink.received[0]
    assert message["title"] == f"[RED] TrainingLossNotFinite - exp on 127.0.0.1:{agent.address[1]}"
    assert message["type"] == "failure"
    body = message["message"]
    assert "log lines:" in body and "Epoch(train)  [1][ 100/1000]" in body  # the log's last lines
    assert f"newest checkpoint: {work_dir / 'epoch_1.pth'}" in body and "--resume" in body
    assert "Run exp (" in body  # the run's progress line
    assert "runbook https://github.com/example/trainwarden/blob/main/docs/contracts/alerts.md#x" in body
    resolved = {**alert, "status": "resolved", "endsAt": "2026-11-26T10:05:00Z"}
    assert post(b, payload(resolved, status="resolved")) == {"queued": 1}
    b.notifier.deliver_once()
    assert sink.received[1]["type"] == "success" and "log lines:" not in sink.received[1]["message"]


def test_a_bridged_red_goes_out_at_once_when_its_agent_cannot_be_reached(bridge):
    import time

    from conftest import free_port

    b, sink = bridge
    instance = f"127.0.0.1:{free_port()}"  # nothing listens there: the agent is down
    start = time.monotonic()
    assert post(b, payload(nan_alert(instance, runbook="docs/contracts/alerts.md#traininglossnotfinite"))) == {"queued": 1}
    b.notifier.deliver_once()
    took = time.monotonic() - start
    assert took < 3, took
    body = sink.received[0]["message"]
    assert sink.received[0]["type"] == "failure"
    assert f"the agent at http://{instance} could not be reached" in body
    assert "The logged loss is not finite." in body and "runbook docs/contracts/alerts.md#traininglossnotfinite" in body


def test_the_agents_address_comes_only_from_a_host_and_port():
    from trainwarden.app.bridge import agent_base

    assert agent_base("gpu1:9841") == "http://gpu1:9841"
    assert agent_base("[::1]:9841") == "http://[::1]:9841"
    assert agent_base("https://gpu1:9841/some/path") == "https://gpu1:9841"
    assert agent_base("gpu1:9841/../../admin") is None and agent_base("a b") is None and agent_base("") is None
