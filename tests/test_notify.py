"""Standalone notifications, delivered for real through apprise to a local HTTP sink (json://) and an in-process
SMTP sink (mailto://): once per condition, resolved notices, flapping held down, storms combined, an outbox that
survives restarts and a target that is down, and secrets that never show."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from conftest import Clock, run_cli, wait_for
from sinks import HttpSink, SmtpSink

from trainwarden.app.agent import Agent
from trainwarden.app.profiles import guide_policy
from trainwarden.model import Condition, RunReport, RunState, Severity, StatusReport
from trainwarden.outputs.notify.service import Notifier
from trainwarden.outputs.notify.targets import Target, mask_text, mask_url

P = " - mmengine - INFO - "


def cond(alert="TrainingLossExplosion", severity="critical", run="r1", key="", since=None) -> Condition:
    return Condition(alert, Severity(severity), f"{run}: {alert}", "do this", "x", since, run, {}, key or f"{alert}|{run}")


def doc_with(*conditions: Condition) -> StatusReport:
    runs: dict[str, list[Condition]] = {}
    for c in conditions:
        runs.setdefault(c.run, []).append(c)
    return StatusReport(runs=tuple(RunReport(run=r, work_dir=f"/w/{r}", state=RunState.RUNNING, epoch=1, max_epochs=5,
                                             loss=0.3, conditions=tuple(cs)) for r, cs in runs.items()))


def notifier(tmp_path, targets, clock=None, **kw) -> Notifier:
    return Notifier(targets, tmp_path / "state", host="gpu-box", clock=clock or time.time, **kw)


def no_tail(run, n):
    return [f"line {i}" for i in range(n)]


def test_fires_once_resolves_once_and_holds_flapping_down(tmp_path, sink):
    clock = Clock()
    n = notifier(tmp_path, [Target(sink.url())], clock, resolve_after_seconds=60)
    c = cond()
    assert n.handle(doc_with(c), no_tail) == 1
    assert n.handle(doc_with(c), no_tail) == 0  # still active: nothing new
    n.deliver_once()
    assert sink.titles() == ["[RED] TrainingLossExplosion - r1 on gpu-box"]
    body = sink.received[0]["message"]
    assert "do this" in body and "Last 50 log lines:" in body and "line 49" in body
    clock.t += 10
    n.handle(doc_with(), no_tail)  # gone...
    clock.t += 30
    n.handle(doc_with(c), no_tail)  # ...and back within the hold-down: flapping, no notice
    clock.t += 30
    n.handle(doc_with(), no_tail)
    clock.t += 59
    assert n.handle(doc_with(), no_tail) == 0  # not yet resolved
    clock.t += 2
    assert n.handle(doc_with(), no_tail) == 1
    n.deliver_once()
    assert sink.titles() == ["[RED] TrainingLossExplosion - r1 on gpu-box", "[RESOLVED] TrainingLossExplosion - r1 on gpu-box"]


def test_routing_by_severity_and_no_resolved_for_info(tmp_path):
    phone, chat = HttpSink(), HttpSink()
    try:
        clock = Clock()
        n = notifier(tmp_path, [Target(phone.url(), frozenset({"critical"})),
                                Target(chat.url(), frozenset({"warning", "info"}), resolved=False)], clock,
                     resolve_after_seconds=0)
        n.handle(doc_with(cond(), cond("TrainingLossRising", "warning"), cond("TrainingEvaluationCompleted", "info")),
                 no_tail)
        n.deliver_once()
        assert phone.titles() == ["[RED] TrainingLossExplosion - r1 on gpu-box"]
        assert sorted(chat.titles()) == ["[INFO] TrainingEvaluationCompleted - r1 on gpu-box",
                                         "[YELLOW] TrainingLossRising - r1 on gpu-box"]
        clock.t += 1
        n.handle(doc_with(), no_tail)
        n.deliver_once()
        assert phone.titles()[-1] == "[RESOLVED] TrainingLossExplosion - r1 on gpu-box"
        assert len(chat.titles()) == 2  # this target takes no resolved notices
    finally:
        phone.close()
        chat.close()


def test_a_storm_is_combined(tmp_path, sink):
    n = notifier(tmp_path, [Target(sink.url())])
    n.handle(doc_with(*(cond(run=f"run{i}") for i in range(12))), no_tail)
    n.deliver_once()
    assert len(sink.received) == 1
    assert sink.titles()[0].startswith("[trainwarden] 12 notifications")
    assert all(f"run{i} on gpu-box" in sink.received[0]["message"] for i in range(12))
    assert n.sent["critical"] == 12 and n.queue_length() == 0


def test_target_down_then_back_across_a_restart_loses_nothing_and_sends_nothing_twice(tmp_path, sink):
    sink.down = True
    clock = Clock()
    n = notifier(tmp_path, [Target(sink.url())], clock, resolve_after_seconds=0)
    for i in range(3):
        n.handle(doc_with(*(cond(run=f"run{k}") for k in range(i + 1))), no_tail)
        n.deliver_once()
        clock.t += 1
    n.handle(doc_with(), no_tail)  # all three resolve while the target is down
    n.deliver_once()
    assert sink.received == [] and sink.attempts >= 1 and n.queue_length() == 6 and n.failed["critical"] >= 1
    # the agent restarts (a new notifier on the same state) and the target comes back
    clock.t += 3600
    again = notifier(tmp_path, [Target(sink.url())], clock, resolve_after_seconds=0)
    again.handle(doc_with(), no_tail)  # nothing active: nothing new to say
    sink.down = False
    again.deliver_once()
    text = "\n".join(m["message"] for m in sink.received)
    for k in range(3):
        assert text.count(f"[RED] TrainingLossExplosion - run{k} on gpu-box") == 1
        assert text.count(f"[RESOLVED] TrainingLossExplosion - run{k} on gpu-box") == 1
    assert again.queue_length() == 0
    again.handle(doc_with(), no_tail)
    again.deliver_once()
    assert len(sink.received) == 1  # nothing more


def test_active_conditions_are_not_repeated_after_a_restart(tmp_path, sink):
    n = notifier(tmp_path, [Target(sink.url())])
    n.handle(doc_with(cond()), no_tail)
    n.deliver_once()
    again = notifier(tmp_path, [Target(sink.url())])
    assert again.handle(doc_with(cond()), no_tail) == 0
    again.deliver_once()
    assert len(sink.received) == 1


def test_enqueueing_a_delivered_message_again_is_refused(tmp_path, sink):
    n = notifier(tmp_path, [Target(sink.url())])
    n.outbox.put("m1", Target(sink.url()).id, {"title": "t", "body": "b", "severity": "info"}, 1.0)
    n.deliver_once()
    assert not n.outbox.put("m1", Target(sink.url()).id, {"title": "t", "body": "b", "severity": "info"}, 2.0)


def test_email_through_a_real_smtp_server(tmp_path):
    smtp = SmtpSink()
    try:
        n = notifier(tmp_path, [Target(smtp.url())])
        n.handle(doc_with(cond()), no_tail)
        n.deliver_once()
        assert len(smtp.messages) == 1
        assert "Subject: [RED] TrainingLossExplosion - r1 on gpu-box" in smtp.messages[0]
    finally:
        smtp.close()


def test_secrets_are_masked_everywhere(tmp_path, caplog):
    secret_url = "json://alice:s3cr3tpass@127.0.0.1:9/hook"  # nothing listens on port 9
    assert "s3cr3tpass" not in mask_url(secret_url)
    assert "s3cr3tpass" not in mask_text(f"failed to reach {secret_url}", [secret_url])
    assert "abc123" not in mask_text("https://x/y?token=abc123&v=1", [])
    caplog.set_level(logging.DEBUG)
    n = notifier(tmp_path, [Target(secret_url)])
    n.handle(doc_with(cond()), no_tail)
    n.deliver_once()
    assert n.failed["critical"] == 1
    assert "s3cr3tpass" not in caplog.text
    for f in (tmp_path / "state").rglob("*"):
        if f.is_file():
            assert "s3cr3tpass" not in f.read_text(encoding="utf-8", errors="replace")
    assert "s3cr3tpass" not in repr(Target(secret_url))


def test_notify_test_command_reports_each_target(sink):
    bad = "json://bob:hunter2@127.0.0.1:9/x"
    result = run_cli("notify-test", "--notify", sink.url(), "--notify", bad)
    assert result.returncode == 1
    assert f"ok     json://127.0.0.1:{sink.port}/hook" in result.stdout
    assert "FAILED json://bob:****@127.0.0.1:9/x" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
    assert sink.titles()[0].startswith("[trainwarden] test notification from ")
    assert run_cli("notify-test").returncode == 2


def test_a_loss_explosion_reaches_the_phone_from_a_watched_run(tmp_path, sink):
    root = tmp_path / "work_dirs"
    session = root / "exp" / "20251111_180600"
    session.mkdir(parents=True)
    log = session / "20251111_180600.log"

    def train(it, loss):
        return (f"{time.strftime('%Y/%m/%d %H:%M:%S')}{P}Epoch(train)  [1][{it:>4}/1000]  lr: 4.0000e-05  eta: 0:10:00  "
                f"time: 0.4567  data_time: 0.0123  memory: 5432  loss: {loss}  loss_cls: 0.1200\n")

    log.write_text(train(50, "0.3000"), encoding="utf-8")
    (root / "exp" / "epoch_1.pth").write_bytes(b"x")
    n = Notifier([Target(sink.url())], tmp_path / "state", host="gpu-box")
    agent = Agent([root], "127.0.0.1", 0, guide_policy(), poll_interval=0.2, rediscover_interval=0.5, notifier=n)
    agent.start()
    try:
        assert agent.ready.wait(20)
        time.sleep(0.5)
        with log.open("a", encoding="utf-8") as f:
            f.write(train(100, "1.3500"))
        start = time.monotonic()
        wait_for(lambda: any("TrainingLossExplosion" in t for t in sink.titles()), timeout=10, interval=0.02)
        took = time.monotonic() - start
        assert took < 5, took
        body = next(m["message"] for m in sink.received if "TrainingLossExplosion" in m["title"])
        assert "1.3500" in body and str(root / "exp" / "epoch_1.pth") in body and "--resume" in body
        assert "Epoch(train)  [1][ 100/1000]" in body  # the log's last lines
    finally:
        agent.stop()


def test_alertmanager_mode_keeps_the_agent_quiet(tmp_path, sink):
    from trainwarden.app.config import load_config
    from trainwarden.app.notifier import build_notifier

    cfg_file = tmp_path / "c.yml"
    cfg_file.write_text(f"notify:\n  mode: alertmanager\n  targets:\n    - url: {sink.url()}\n", encoding="utf-8")
    assert build_notifier(load_config(cfg_file), None, [tmp_path]) is None
    cfg_file.write_text(f"notify:\n  state_dir: {tmp_path / 's'}\n  targets:\n    - url: {sink.url()}\n"
                        "      severities: [critical]\n", encoding="utf-8")
    n = build_notifier(load_config(cfg_file), None, [tmp_path])
    assert n is not None and [t.severities for t in n.targets.values()] == [frozenset({"critical"})]
    assert Path(n.outbox.dir).is_relative_to(tmp_path / "s")


def test_url_from_environment_and_file(tmp_path, monkeypatch, sink):
    from trainwarden.app.config import ConfigError, load_config
    secret = tmp_path / "phone.url"
    secret.write_text(sink.url() + "\n", encoding="utf-8")
    monkeypatch.setenv("CHAT_URL", sink.url("chat"))
    cfg_file = tmp_path / "c.yml"
    cfg_file.write_text(f"notify:\n  targets:\n    - url_file: {secret}\n    - url_env: CHAT_URL\n", encoding="utf-8")
    targets = load_config(cfg_file).notify.targets
    assert [t.url for t in targets] == [sink.url(), sink.url("chat")]
    cfg_file.write_text("notify:\n  targets:\n    - url_env: NOPE_NOT_SET\n    - {url: 'json://x:pw@h/p', severities: [loud]}\n"
                        "    - {url_file: /no/such/secret}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(cfg_file)
    assert len(err.value.problems) == 2 and "pw" not in str(err.value.problems)  # an unset variable only turns it off
    cfg_file.write_text("notify:\n  targets:\n    - url_env: NOPE_NOT_SET\n", encoding="utf-8")
    assert load_config(cfg_file).notify.targets == []


def test_a_combined_message_keeps_every_heading():
    from trainwarden.outputs.notify.message import render_batch

    messages = [{"title": f"[RED] TrainingLossExplosion - run{k:02d} on box", "body": "x" * 3000, "created": 1.8e9}
                for k in range(50)]
    title, body = render_batch(messages)
    assert title.startswith("[trainwarden] 50 notifications: ")
    for m in messages:
        assert f"== {m['title']} (" in body
    assert len(body) < 40000


def test_red_is_not_held_behind_a_flood_of_info(tmp_path, sink):
    """200 info notices in a minute (a fast replay's evaluations) and one red among them: the red still goes
    out within a few seconds, and the target gets no more than its rate (a burst of 5, then 20 a minute)."""
    clock = Clock()
    n = notifier(tmp_path, [Target(sink.url())], clock, resolve_after_seconds=0)
    red_at = None
    for step in range(300):  # 60 s in 0.2 s steps
        infos = [cond(alert="TrainingEvaluationCompleted", severity="info", run=f"r{k}", key=f"E|{k}")
                 for k in range(step * 2 // 3)]
        extra = [cond(run="exp")] if step >= 150 else []
        if step == 150:
            red_at = clock.t
        n.handle(doc_with(*infos, *extra), no_tail)
        n.deliver_once()
        if step >= 150 and red_at is not None and any("[RED] TrainingLossExplosion - exp" in t
                                                      for _, t in sink.timeline()):
            took = clock.t - red_at
            red_at = None
            assert took <= 3.5, took
        clock.t += 0.2
    assert red_at is None, "the red notice never went out"
    assert len(sink.received) <= 5 + 20 + 1
    assert sink.delivered_titles()["[RED] TrainingLossExplosion - exp on gpu-box"] == 1


def test_a_hot_gpu_pages_once_after_its_hold_not_once_per_run_on_it(tmp_path, sink):
    """GPUTemperatureHigh is the host's (one per GPU): the runs on the GPU turn yellow but are not paged again,
    and, as its Prometheus rule's `for: 1m`, it pages only once it has lasted a minute."""
    from trainwarden.judge.rules.registry import rule

    clock = Clock()
    n = notifier(tmp_path, [Target(sink.url())], clock, resolve_after_seconds=0)
    hot = rule("GPUTemperatureHigh").fire("", clock.t, {"gpu": "0"}, gpu_name="GPU 0", model="RTX", temp=85.0, limit=80.0)
    runs = tuple(RunReport(run=r, work_dir=f"/w/{r}", state=RunState.RUNNING, conditions=(hot.for_run(r),))
                 for r in ("a", "b"))
    report = StatusReport(runs=runs, conditions=(hot,))
    assert n.handle(report, no_tail) == 0  # not yet: a moment's spike is no cooling problem
    clock.t += 59
    assert n.handle(report, no_tail) == 0
    clock.t += 2
    assert n.handle(report, no_tail) == 1
    n.deliver_once()
    assert sink.titles() == ["[YELLOW] GPUTemperatureHigh - gpu-box"]
    clock.t += 10
    cool = StatusReport(runs=tuple(RunReport(run=r.run, work_dir=r.work_dir, state=RunState.RUNNING) for r in runs))
    n.handle(cool, no_tail)  # cooled down before another minute: the next spike starts a new hold
    n.deliver_once()
    assert n.handle(report, no_tail) == 0
