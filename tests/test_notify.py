"""Standalone notifications, delivered for real through apprise to a local HTTP sink (json://) and an in-process
SMTP sink (mailto://): once per condition, resolved notices, flapping held down, storms combined, an outbox that
survives restarts and a target that is down, and secrets that never show."""

from __future__ import annotations

import logging
import sys
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


# -- the apprise type of each page (issue 12, finding 6) ----------------------------------------------------------
def types_by_title(sink) -> dict[str, str]:
    return {m["title"]: m.get("type") for m in sink.received}


def test_each_page_arrives_with_the_apprise_type_of_its_severity(tmp_path, sink):
    """A channel colours or prioritises by apprise's notify type: red is `failure`, yellow `warning`, a note
    `info`, and a resolved notice `success` (never the red of the alert it resolves)."""
    clock = Clock()
    n = notifier(tmp_path, [Target(sink.url())], clock, resolve_after_seconds=0)
    n.handle(doc_with(cond(), cond("TrainingLossRising", "warning"), cond("TrainingEvaluationCompleted", "info")),
             no_tail)
    n.deliver_once()
    assert types_by_title(sink) == {"[RED] TrainingLossExplosion - r1 on gpu-box": "failure",
                                    "[YELLOW] TrainingLossRising - r1 on gpu-box": "warning",
                                    "[INFO] TrainingEvaluationCompleted - r1 on gpu-box": "info"}
    clock.t += 10  # the token bucket refills
    n.handle(doc_with(), no_tail)
    n.deliver_once()
    types = types_by_title(sink)
    assert types["[RESOLVED] TrainingLossExplosion - r1 on gpu-box"] == "success"
    assert types["[RESOLVED] TrainingLossRising - r1 on gpu-box"] == "success"


def test_a_combined_message_takes_its_worst_members_type_and_leads_with_it(tmp_path, sink):
    clock = Clock()
    n = notifier(tmp_path, [Target(sink.url())], clock, resolve_after_seconds=0)
    infos = [cond("TrainingEvaluationCompleted", "info", run=f"r{k}", key=f"E|{k}") for k in range(8)]
    n.handle(doc_with(*infos), no_tail)  # queued first: the red comes after them
    n.handle(doc_with(*infos, cond(run="exp")), no_tail)
    n.deliver_once()
    assert len(sink.received) == 1
    combined = sink.received[0]
    assert combined["type"] == "failure"
    assert combined["title"].startswith("[trainwarden] 9 notifications: [RED] TrainingLossExplosion - exp on gpu-box")
    assert combined["message"].startswith("== [RED] TrainingLossExplosion - exp on gpu-box")


def test_a_combined_message_of_notes_and_resolved_reds_is_not_red(tmp_path, sink):
    """What could page wrongly: a resolved red inside a combined message must not make it `failure`, and a
    combined message of resolved notices only is `success`."""
    clock = Clock()
    n = notifier(tmp_path, [Target(sink.url())], clock, resolve_after_seconds=0)
    sink.down = True  # the reds and their resolved notices pile up while the target is down
    reds = [cond(run=f"r{k}") for k in range(4)]
    n.handle(doc_with(*reds), no_tail)
    n.deliver_once()
    clock.t += 1
    n.handle(doc_with(), no_tail)
    for m in n.outbox.pending():  # the reds themselves were delivered elsewhere: only the resolved remain
        if m["kind"] == "firing":
            n.outbox.delivered(m)
    clock.t += 120
    sink.down = False
    n.deliver_once()
    assert [m["type"] for m in sink.received] == ["success"]
    assert sink.received[0]["title"].startswith("[trainwarden] 4 notifications: [RESOLVED] ")
    sink.received.clear()
    clock.t += 120
    n.handle(doc_with(*(cond("TrainingEvaluationCompleted", "info", run=f"i{k}", key=f"E|{k}") for k in range(4))),
             no_tail)
    n.handle(doc_with(cond(run="late")), no_tail)
    n.handle(doc_with(), no_tail)  # the red resolves before delivery: its firing goes, and its resolved
    for m in n.outbox.pending():
        if m["kind"] == "firing" and m["severity"] == "critical":
            n.outbox.delivered(m)
    n.deliver_once()
    assert [m["type"] for m in sink.received] == ["info"]
    assert sink.received[0]["title"].startswith("[trainwarden] 5 notifications: [INFO] ")


# -- an unusable URL is refused at start (issue 12, finding 7) ----------------------------------------------------
PLACEHOLDER_URL = "tgram://BOT_TOKEN/CHAT_ID"  # the README's old example: apprise cannot parse it


@pytest.mark.parametrize("command", ["watch", "run", "bridge", "notify-test", "demo"])
def test_an_unusable_url_is_a_configuration_error_at_start(tmp_path, command):
    """Exit 2 at once, the URL masked to its scheme (a bot token can sit where a host would), and nothing
    started: no agent serving, no training launched."""
    marker = tmp_path / "the-training-ran"
    token = tmp_path / "token"
    token.write_text("t" * 32, encoding="utf-8")
    args = {"watch": ["watch", str(tmp_path), "--web.listen-address", "127.0.0.1:0"],
            "run": ["run", "--work-dir", str(tmp_path / "w")],
            "bridge": ["bridge", "--bridge.token-file", str(token), "--web.listen-address", "127.0.0.1:0"],
            "notify-test": ["notify-test"],
            "demo": ["demo", "--dir", str(tmp_path / "demo"), "--duration", "0", "--linger", "0",
                     "--web.listen-address", "127.0.0.1:0"]}[command]
    training = ["--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"] if command == "run" else []
    result = run_cli(*args, "--notify", PLACEHOLDER_URL, *training, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "--notify: apprise cannot use tgram://****" in result.stderr
    assert "BOT_TOKEN" not in result.stdout + result.stderr and "CHAT_ID" not in result.stdout + result.stderr
    assert not marker.exists()


def test_an_unusable_url_in_the_config_file_is_reported_by_position(tmp_path):
    from trainwarden.app.config import ConfigError, load_config

    apprise_file = tmp_path / "apprise.yml"
    apprise_file.write_text("urls:\n  - tgram://BOT_TOKEN/CHAT_ID\n", encoding="utf-8")
    cfg_file = tmp_path / "c.yml"
    cfg_file.write_text(f"notify:\n  targets:\n    - url: json://127.0.0.1:8080/hook\n    - url: '{PLACEHOLDER_URL}'\n"
                        f"  apprise_config: {apprise_file}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(cfg_file)
    problems = err.value.problems
    assert len(problems) == 2, problems
    assert "notify.targets[1]: apprise cannot use tgram://****" in problems[0]
    assert "notify.apprise_config: apprise finds no usable URL" in problems[1]
    assert "BOT_TOKEN" not in str(problems)
    result = run_cli("watch", str(tmp_path), "--config.file", str(cfg_file), "--web.listen-address", "127.0.0.1:0",
                     timeout=30)
    assert result.returncode == 2 and "config error" in result.stderr and "BOT_TOKEN" not in result.stderr


def test_every_notification_url_in_the_readme_and_docs_parses():
    """A user copies the examples: each apprise URL the README and docs/ show must be one apprise can use."""
    import re

    import apprise

    schemes = set()
    for plugin in apprise.Apprise().details()["schemas"]:
        for key in ("protocols", "secure_protocols"):
            value = plugin.get(key) or ()
            schemes.update([value] if isinstance(value, str) else value)
    repo = Path(__file__).parent.parent
    unusable = []
    for doc in [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for match in re.finditer(r"\b([a-z][a-z0-9+]*)://[^\s'\"`)<>|]+", line):
                url = match.group(0).rstrip(".,;:")
                if match.group(1) in schemes and not apprise.Apprise.instantiate(url):
                    unusable.append(f"{doc.relative_to(repo)}:{number}: {url}")
    assert not unusable, unusable


# -- a corrected target gets the active red (issue 12, finding 8) -------------------------------------------------
def test_a_red_pending_for_a_removed_target_goes_to_the_new_one_once(tmp_path, sink):
    clock = Clock()
    dead = Target("json://127.0.0.1:9/hook")  # nothing listens on port 9: the first URL was wrong
    first = notifier(tmp_path, [dead], clock)
    first.handle(doc_with(cond()), no_tail)
    first.deliver_once()
    assert first.failed["critical"] == 1 and first.queue_length() == 1
    clock.t += 60  # restarted with the corrected URL, the red still active
    fixed = notifier(tmp_path, [Target(sink.url())], clock)
    assert fixed.handle(doc_with(cond()), no_tail) == 1  # still active: queued for the target never told of it
    fixed.deliver_once()
    assert sink.titles() == ["[RED] TrainingLossExplosion - r1 on gpu-box"]
    assert sink.received[0]["type"] == "failure" and fixed.queue_length() == 0
    clock.t += 60
    again = notifier(tmp_path, [Target(sink.url())], clock)  # a third start: nothing more
    again.handle(doc_with(cond()), no_tail)
    again.deliver_once()
    assert len(sink.received) == 1


def test_an_active_red_goes_to_a_target_added_later_and_not_again_to_the_old_one(tmp_path):
    phone, chat, mail = HttpSink(), HttpSink(), HttpSink()
    try:
        clock = Clock()
        first = notifier(tmp_path, [Target(phone.url())], clock, resolve_after_seconds=0)
        first.handle(doc_with(cond(), cond("TrainingLossRising", "warning"), cond("TrainingEvaluationCompleted", "info")),
                     no_tail)
        first.deliver_once()
        assert len(phone.received) == 3
        clock.t += 60
        targets = [Target(phone.url()), Target(chat.url()), Target(mail.url(), frozenset({"warning"}))]
        second = notifier(tmp_path, targets, clock, resolve_after_seconds=0)
        second.handle(doc_with(cond(), cond("TrainingLossRising", "warning"), cond("TrainingEvaluationCompleted", "info")),
                      no_tail)
        second.deliver_once()
        assert len(phone.received) == 3  # the old target is not paged twice
        # the new target hears of the active red and yellow (a note is news once: it is not repeated)
        assert sorted(chat.titles()) == ["[RED] TrainingLossExplosion - r1 on gpu-box",
                                         "[YELLOW] TrainingLossRising - r1 on gpu-box"]
        assert mail.titles() == ["[YELLOW] TrainingLossRising - r1 on gpu-box"]  # only what it takes
        body = next(m["message"] for m in chat.received if "[RED]" in m["title"])
        assert "Last 50 log lines:" in body  # the same message a first page carries
        clock.t += 60
        third = notifier(tmp_path, targets, clock, resolve_after_seconds=0)
        third.handle(doc_with(cond(), cond("TrainingLossRising", "warning")), no_tail)
        third.deliver_once()
        assert (len(phone.received), len(chat.received), len(mail.received)) == (3, 2, 1)
        clock.t += 60
        third.handle(doc_with(), no_tail)  # both resolve: every target that was told hears it once
        third.deliver_once()
        resolved = [t for s in (phone, chat) for t in s.titles() if t.startswith("[RESOLVED]")]
        assert sorted(resolved) == sorted(["[RESOLVED] TrainingLossExplosion - r1 on gpu-box",
                                           "[RESOLVED] TrainingLossRising - r1 on gpu-box"] * 2)
        assert mail.titles()[1:] == ["[RESOLVED] TrainingLossRising - r1 on gpu-box"]
        for f in (tmp_path / "state").rglob("*"):
            if f.is_file():
                text = f.read_text(encoding="utf-8", errors="replace")
                assert all(str(s.port) not in text for s in (phone, chat, mail)), f  # targets by a hash only
    finally:
        for s in (phone, chat, mail):
            s.close()


def _watch(root: Path, config: Path, url: str):
    import os
    import subprocess

    return subprocess.Popen([sys.executable, "-m", "trainwarden", "watch", str(root), "--config.file", str(config),
                             "--web.listen-address", "127.0.0.1:0", "--notify", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"})


def _stop_watch(proc) -> str:
    import signal

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return out + err


def _nan_run(root: Path) -> None:
    session = root / "exp" / "20251111_180600"
    session.mkdir(parents=True)
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    lines = [f"{now}{P}Epoch(train)  [1][{it:>4}/1000]  lr: 4.0000e-05  eta: 0:10:00  time: 0.4567  data_time: 0.0123  "
             f"memory: 5432  loss: {loss}  loss_cls: {loss}\n" for it, loss in ((50, "0.3000"), (100, "nan"))]
    (session / "20251111_180600.log").write_text("".join(lines), encoding="utf-8")
    (root / "exp" / "epoch_1.pth").write_bytes(b"x")


def test_two_agent_starts_over_one_state_folder_send_the_red_to_the_corrected_target(tmp_path, sink):
    """The user's night: `watch --notify WRONG_URL` queues a red it cannot deliver; restarted with the corrected
    URL, the red (still active, pending in the outbox) reaches the new target, once."""
    root = tmp_path / "work_dirs"
    _nan_run(root)
    config = tmp_path / "c.yml"
    config.write_text(f"notify:\n  state_dir: {tmp_path / 'state'}\n", encoding="utf-8")
    wrong = _watch(root, config, "json://127.0.0.1:9/hook")  # a URL that parses, to a port nothing listens on
    try:
        wait_for(lambda: any("TrainingLossNotFinite" in f.read_text(encoding="utf-8", errors="replace")
                             for f in (tmp_path / "state").rglob("outbox/*.json")), timeout=60, interval=0.2)
    finally:
        _stop_watch(wrong)
    fixed = _watch(root, config, sink.url())
    try:
        wait_for(lambda: any("TrainingLossNotFinite" in t for t in sink.titles()), timeout=60, interval=0.2)
        wait_for(lambda: not list((tmp_path / "state").rglob("outbox/*.json")), timeout=30, interval=0.2)
    finally:
        output = _stop_watch(fixed)
    pages = [m for m in sink.received if "TrainingLossNotFinite" in m["title"]]
    assert len(pages) == 1 and pages[0]["type"] == "failure", sink.titles()
    assert "dropping" not in output
    assert max(sink.delivered_titles().values()) == 1  # nothing twice
