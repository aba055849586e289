"""Bad input (issue 7): hypothesis throws random and mutated input at every parser, the configuration loader, the
state and the exporters, and the bridge's webhook endpoint over real HTTP. Nothing may raise, memory stays bounded,
and absurd values (negative epochs, 1e308 losses, nan) come out as a valid exposition that `promtool` accepts.
Mutations start from the real captured lines of tests/fixtures/real-logs (MMEngine 0.x, MMDetection 2.x)."""

from __future__ import annotations

import http.client
import json
import math
import subprocess
import threading
import tracemalloc

from conftest import REAL, require_binary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest

from trainwarden.app.bridge import Bridge, alert_event
from trainwarden.app.config import ConfigError, load_config
from trainwarden.judge.policy import DEFAULT_POLICY
from trainwarden.model import Record
from trainwarden.outputs.metrics import CollectorStats, make_registry
from trainwarden.outputs.notify.service import Notifier
from trainwarden.outputs.status import document, status_report
from trainwarden.parse.configdump import parse_config_dump, parse_environment
from trainwarden.parse.console import parse_console_line
from trainwarden.parse.formats import FORMATS, recognise
from trainwarden.parse.formats.base import ParseContext
from trainwarden.parse.jsonlogs import parse_mmcv_json_line, parse_scalars_line, parse_test_dump
from trainwarden.parse.messages import eta_seconds, parse_items, parse_message, to_float
from trainwarden.parse.prefix import clean_line, split_header
from trainwarden.parse.stream import LogStream
from trainwarden.state import RunState

REAL_LINES = sorted({
    line
    for path in sorted(REAL.rglob("*")) if path.is_file() and path.suffix in (".log", ".json")
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[:400] if line.strip()
})
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated_line(draw) -> str:
    """A real log line with a few characters replaced, inserted or deleted, or its numbers made absurd."""
    line = draw(st.sampled_from(REAL_LINES))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["replace", "insert", "delete", "number", "cut"]))
        pos = draw(st.integers(0, max(0, len(line) - 1)))
        if kind == "replace" and line:
            line = line[:pos] + draw(st.characters()) + line[pos + 1:]
        elif kind == "insert":
            line = line[:pos] + draw(st.text(max_size=8)) + line[pos:]
        elif kind == "delete":
            line = line[:pos] + line[pos + draw(st.integers(1, 10)):]
        elif kind == "number":
            absurd = draw(st.sampled_from(["-1", "1e308", "-1e308", "nan", "inf", "-inf", "99999999999999999999",
                                           "0", "-0.0", "1e-320", "NaN", "1e309"]))
            line = line[:pos] + absurd + line[pos:]
        else:
            line = line[:pos]  # a half-written line
    return line


any_line = st.one_of(mutated_line(), st.text(max_size=300), st.sampled_from(REAL_LINES))


@FUZZ
@given(any_line)
def test_line_parsers_never_raise(line):
    cleaned = clean_line(line)
    header = split_header(cleaned, 2025)
    message = header.message if header else cleaned
    for result in (parse_message(message, 1.0), parse_console_line(cleaned), parse_scalars_line(cleaned),
                   parse_mmcv_json_line(cleaned)):
        assert result is None or isinstance(result, Record)
    values, _ = parse_items(message)
    assert all(isinstance(v, float) for v in values.values())
    for word in message.split()[:20]:
        to_float(word)
        eta_seconds(word)


def exposition_of(lines: list[str], run: str, now: float) -> bytes:
    """Lines through the stream, the state, the status document (strict JSON: non-finite values are null) and
    the exporter."""
    stream = LogStream(2025)
    state = RunState(run, f"/w/{run}", "mmengine")
    for line in lines:
        state.apply_all(stream.feed(line), "s1")
    state.apply_all(stream.flush(), "s1")
    report = status_report([state.snapshot()], DEFAULT_POLICY, now, [])
    json.dumps(document(report), allow_nan=False)
    return generate_latest(make_registry(lambda: report, CollectorStats()))


@FUZZ
@given(st.lists(any_line, max_size=60))
def test_log_stream_and_state_take_any_sequence(lines):
    exposition_of(lines, "r", 1_800_000_000.0)


@FUZZ
@given(st.lists(any_line, max_size=30), st.text(max_size=40), st.binary(max_size=300))
def test_every_format_takes_any_lines_and_any_file(lines, name, first_bytes):
    """Through the Format protocol, as the reader uses it: recognise any file, parse any lines with any format."""
    found = recognise(name, first_bytes)
    assert found is None or found in FORMATS
    for fmt in FORMATS:
        fmt.matches(name, first_bytes)
        parser = fmt.new_parser(ParseContext(2025, loop=lambda: "epoch"))
        records = [r for line in lines for r in parser.feed(line)] + parser.flush()
        assert all(isinstance(r, Record) for r in records)
        for line in lines[:5]:
            fmt.line_timestamp(line, 2025)


python_like = st.one_of(
    st.text(max_size=400),
    st.lists(st.sampled_from([
        "train_cfg = dict(max_epochs=", "type='EpochBasedTrainLoop'", "max_iters=", "val_interval=", "1e308", "-5",
        "__import__('os').system('touch /tmp/pwned')", "import os", "lambda: 0", "[" * 50, "]" * 50, "(", ")",
        "train_dataloader = dict(batch_size=", "'", '"""', "\n", "=", ",", "dict(", "{", "}", "custom_hooks = [",
        "dict(type='EarlyStoppingHook', monitor='pascal_voc/mAP', patience=", "9" * 400, "...", "**", "*",
    ]), max_size=40).map("".join),
)


@FUZZ
@given(python_like)
def test_config_dump_and_environment_never_raise_nor_run(source):
    facts = parse_config_dump(source, 1.0)
    assert facts is None or isinstance(facts, Record)
    parse_environment(source, 1.0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=25,
)
scalar_keys = st.sampled_from(["mode", "epoch", "iter", "step", "lr", "loss", "time", "memory", "coco/bbox_mAP",
                               "pascal_voc/mAP", "data_time", "loss_cls", "bbox_mAP", "mAP"])
json_logish = st.dictionaries(scalar_keys, json_values, max_size=10)


@FUZZ
@given(st.one_of(json_logish, json_values))
def test_json_log_parsers_never_raise(value):
    text = json.dumps(value)
    for result in (parse_scalars_line(text), parse_scalars_line(text, by_epoch=True), parse_mmcv_json_line(text)):
        assert result is None or isinstance(result, Record)
    parse_test_dump(text)


config_values = st.one_of(json_values, st.sampled_from([-1, 0, 1e308, -1e308, float("nan"), "", "nowhere", [], {}]))
config_keys = st.sampled_from(["watch", "web", "listen_address", "discovery", "poll_interval_seconds", "policy",
                               "eval_key", "goal", "notify", "targets", "url", "url_env", "url_file", "severities",
                               "runs", "pid", "mode", "state_dir", "max_per_minute", "stall_floor_seconds", "bogus"])
config_trees = st.recursive(config_values, lambda c: st.dictionaries(config_keys, c, max_size=5) | st.lists(c, max_size=3),
                            max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(st.one_of(config_trees, st.text(max_size=200)))
def test_malformed_configuration_is_reported_never_raised(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("cfg") / "trainwarden.yml"
    path.write_text(tree if isinstance(tree, str) else json.dumps(tree, allow_nan=True), encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


def test_absurd_values_make_a_valid_exposition():
    promtool = require_binary("promtool")
    lines = [
        "2025/11/11 18:06:00 - mmengine - INFO - Epoch(train)  [-3][  -5/1000]  lr: -4.0000e-05  eta: -1 day, 0:00:00  "
        "time: 1e308  data_time: -0.0123  memory: 99999999999999  loss: 1e308  loss_cls: nan  loss_bbox: -inf",
        "2025/11/11 18:06:01 - mmengine - INFO - Epoch(train) [999999999][99999999999/1]  lr: nan  eta: 0:00:00  "
        "time: inf  data_time: nan  memory: -1  loss: -1e308",
        "2025/11/11 18:06:02 - mmengine - INFO - Epoch(val) [-1][0/0]    pascal_voc/mAP: 1e308  coco/bbox_mAP: nan  "
        "data_time: -1  time: inf",
        "2025/11/11 18:06:03 - mmengine - INFO - Saving checkpoint at -7 epochs",
        "2025-11-11 18:06:04,000 - mmdet - INFO - Epoch [0][-10/0]\tlr: 1e309, eta: 99999 days, 0:00:00, time: -1, "
        "data_time: 0, memory: 1e308, loss_cls: nan, loss: inf",
    ]
    text = exposition_of(lines, "absurd", 1_762_900_000.0).decode()
    assert 'trainwarden_train_loss{run="absurd"}' in text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_memory_stays_bounded_on_an_endless_run():
    """200 000 train lines, evaluations and errors with ever new iterations: what the state holds stops growing."""
    stream = LogStream(2025)
    state = RunState("long", "/w/long", "mmengine")

    def feed(start: int, n: int) -> None:
        for i in range(start, start + n):
            line = (f"2025/11/11 18:06:00 - mmengine - INFO - Iter(train) [{i}/100000000]  lr: 1.0e-04  eta: 1:00:00  "
                    f"time: 0.5  data_time: 0.01  memory: 5000  loss: {1 + math.sin(i):.4f}  loss_x{i % 7}: 0.1")
            state.apply_all(stream.feed(line), "s1")
            if i % 100 == 0:
                state.apply_all(stream.feed(f"2025/11/11 18:06:00 - mmengine - INFO - Iter(val) [{i}/{i}]  mAP: 0.5"), "s1")
                state.apply_all(stream.feed(f"RuntimeError: CUDA out of memory {i}"), "s1")

    tracemalloc.start()
    feed(0, 100_000)
    first = tracemalloc.get_traced_memory()[0]
    feed(100_000, 100_000)
    second = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert second - first < 2 * 2**20, (first, second)  # the second 100 000 lines add (almost) nothing


def alerts_payloads():
    alert = st.fixed_dictionaries({}, optional={
        "status": st.one_of(st.sampled_from(["firing", "resolved"]), json_values),
        "labels": st.one_of(st.dictionaries(st.sampled_from(["alertname", "severity", "run", "instance"]),
                                            st.one_of(st.text(max_size=10), json_values), max_size=4), json_values),
        "annotations": st.one_of(st.dictionaries(st.sampled_from(["summary", "description", "runbook"]), json_values),
                                 json_values),
        "startsAt": st.one_of(st.sampled_from(["2026-11-26T10:00:00Z", "2026-11-26T10:00:00.123456789+01:00",
                                               "0001-01-01T00:00:00Z", "not a time", "9999-12-31T23:59:59Z"]),
                              json_values),
        "endsAt": json_values, "fingerprint": json_values,
    })
    return st.one_of(st.fixed_dictionaries({"alerts": st.lists(alert, max_size=4)},
                                           optional={"status": json_values, "groupLabels": json_values}),
                     json_values.map(lambda v: {"alerts": v}), json_values)


def test_alert_event_takes_any_alert():
    @FUZZ
    @given(alerts_payloads())
    def check(payload):
        alerts = payload.get("alerts") if isinstance(payload, dict) else None
        for alert in alerts if isinstance(alerts, list) else []:  # what Bridge.receive hands on
            if isinstance(alert, dict):
                alert_event(alert, 1_800_000_000.0)

    check()


def test_the_webhook_endpoint_survives_anything(tmp_path):
    bridge = Bridge(Notifier([], tmp_path / "state", host="h"), "fuzz-token-0123456789", "127.0.0.1", 0)
    threading.Thread(target=bridge.server.serve_forever, daemon=True).start()
    port = bridge.address[1]

    def request(body: bytes, headers: dict) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.putrequest("POST", "/alerts")
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders()
            conn.send(body)
            return conn.getresponse().status
        finally:
            conn.close()

    auth = {"Authorization": "Bearer fuzz-token-0123456789", "Content-Type": "application/json"}

    @settings(max_examples=150, deadline=None)
    @given(st.one_of(alerts_payloads().map(lambda p: json.dumps(p).encode()), st.binary(max_size=300)),
           st.sampled_from(["exact", "missing", "garbage", "negative", "huge"]))
    def check(body, length):
        headers = dict(auth)
        headers["Content-Length"] = {"exact": str(len(body)), "missing": None, "garbage": "12abc", "negative": "-5",
                                     "huge": str(10 << 20)}[length]
        if headers["Content-Length"] is None:
            del headers["Content-Length"]
        status = request(body if length != "huge" else b"{}", headers)
        assert status in (200, 400, 413), status

    try:
        check()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        assert bridge.stats.webhooks["accepted"] > 0 and bridge.stats.webhooks["invalid"] > 0
    finally:
        bridge.server.shutdown()
        bridge.server.server_close()
