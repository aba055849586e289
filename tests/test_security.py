"""Security review (issue 7), checked for real: loopback by default, a bridge that needs a token, an agent with no
write endpoint, no file outside the watched paths over HTTP, a training config that is never executed, and planted
secrets that appear in no output of any command, no page, no metric and no file the agent writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import free_port, run_cli, wait_for
from stack import first_lines, line

from trainwarden.app.config import DEFAULT_LISTEN
from trainwarden.cli.main import build_parser

SECRET = "PLANTEDs3cretZq81"  # in URLs, tokens and files below; must appear nowhere the user or a scraper can see
TOKEN = "PLANTEDtokenXk27f9a1b2c3"


def fetch(url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except OSError:  # not listening (yet)
        return 0, ""


def test_every_server_listens_on_loopback_by_default():
    parser = build_parser()
    assert DEFAULT_LISTEN.startswith("127.0.0.1:")
    for argv in (["watch", "x"], ["bridge"], ["run", "--", "true"], ["demo"]):
        args = parser.parse_args(argv)
        assert (args.listen_address or DEFAULT_LISTEN).startswith("127.0.0.1:"), argv


def test_the_bridge_refuses_to_start_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("TRAINWARDEN_BRIDGE_TOKEN", raising=False)
    result = run_cli("bridge", "--notify", "json://127.0.0.1:9/x", "--web.listen-address", f"127.0.0.1:{free_port()}",
                     timeout=30)
    assert result.returncode == 2 and "a token is required" in result.stderr
    short = tmp_path / "token"
    short.write_text("abc\n", encoding="utf-8")
    result = run_cli("bridge", "--bridge.token-file", str(short), "--notify", "json://127.0.0.1:9/x", timeout=30)
    assert result.returncode == 2 and "too short" in result.stderr


def _agent(root: Path, port: int, config: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    argv = [sys.executable, "-m", "trainwarden", "watch", str(root), "--web.listen-address", f"127.0.0.1:{port}"]
    if config:
        argv += ["--config.file", str(config)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return out + err


def _run_dir(root: Path) -> Path:
    session = root / "exp" / "20251111_180600"
    session.mkdir(parents=True)
    (session / "20251111_180600.log").write_text(first_lines() + line(200, 1.5), encoding="utf-8")
    return session


def test_no_write_endpoint_and_no_file_outside_the_watched_paths(tmp_path):
    root = tmp_path / "work_dirs"
    _run_dir(root)
    private = tmp_path / "private.txt"
    private.write_text("the user's private key: " + SECRET + "\n", encoding="utf-8")
    other = root / "linked" / "20251111_180600"  # a run whose log is a link to a file outside the work dir
    other.mkdir(parents=True)
    (other / "20251111_180600.log").symlink_to(private)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    agent = _agent(root, port)
    try:
        wait_for(lambda: fetch(base + "/healthz")[0] == 200, timeout=30)
        wait_for(lambda: '"exp"' in fetch(base + "/api/runs")[1], timeout=30)
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            for path in ("/", "/metrics", "/api/runs", "/api/runs/exp/log"):
                code, _ = fetch(base + path, method=method, data=b"{}" if method != "DELETE" else None)
                assert code in (405, 501), (method, path, code)
        for path in ("/api/runs/..%2F..%2F..%2Fetc%2Fpasswd/log", "/api/runs/%2Fetc%2Fpasswd/log",
                     "/api/runs/../../etc/passwd/log", "/../../etc/passwd", "/api/runs/exp/../../private.txt"):
            code, body = fetch(base + path)
            assert code == 404 and "root:" not in body, path
        code, body = fetch(base + "/api/runs/linked/log?lines=50")
        assert code == 200 and SECRET not in body and json.loads(body)["lines"] == []
        code, body = fetch(base + "/api/runs/exp/log?lines=5")
        assert code == 200 and "loss: 1.5000" in body  # a run's own log is served
        for path in ("/", "/metrics", "/api/runs"):
            assert SECRET not in fetch(base + path)[1]
    finally:
        _stop(agent)


def test_a_training_config_is_never_executed(tmp_path):
    marker = tmp_path / "PWNED"
    payload = f"import os\nos.system('touch {marker}')\n__import__('os').system('touch {marker}')\n"
    session = _run_dir(tmp_path / "work_dirs")
    (session.parent / "evil_config.py").write_text(payload + "train_cfg = dict(max_epochs=3)\n", encoding="utf-8")
    (session / "vis_data").mkdir()
    (session / "vis_data" / "config.py").write_text(payload, encoding="utf-8")
    log = session / "20251111_180600.log"
    log.write_text(f"2025/11/11 18:06:00 - mmengine - INFO - Config:\n{payload}" + log.read_text(encoding="utf-8"),
                   encoding="utf-8")
    for argv in (["status", "--json", str(tmp_path / "work_dirs")], ["analyze", str(tmp_path / "work_dirs" / "exp")]):
        result = run_cli(*argv, timeout=60)
        assert result.returncode in (0, 3), result.stderr
    assert not marker.exists()


def test_planted_secrets_appear_in_no_output(tmp_path, monkeypatch):
    """A secret in every place one can be (a URL's password, a token in a query, a URL from the environment and from
    a file, the bridge's token), every target down so errors are logged; then every output is searched for it."""
    dead = free_port()  # nothing listens: each delivery fails and is logged
    url_file = tmp_path / "phone-url"
    url_file.write_text(f"json://user:{SECRET}@127.0.0.1:{dead}/file\n", encoding="utf-8")
    config = tmp_path / "trainwarden.yml"
    config.write_text(
        "policy:\n  profile: guide\n"  # the planted run's explosion is the guide's loss_max
        "notify:\n"
        f"  state_dir: {tmp_path / 'state'}\n"
        "  targets:\n"
        f"    - url: json://admin:{SECRET}@127.0.0.1:{dead}/hook?token={SECRET}\n"
        "    - url_env: PHONE_URL\n"
        f"    - url_file: {url_file}\n", encoding="utf-8")
    env = {"PHONE_URL": f"tgram://123456789:AAH{SECRET}/12345", "TRAINWARDEN_BRIDGE_TOKEN": TOKEN}
    for key, val in env.items():
        monkeypatch.setenv(key, val)  # every command below sees them, as a user's shell would
    outputs: list[str] = []
    root = tmp_path / "work_dirs"
    _run_dir(root)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    agent = _agent(root, port, config, env)
    try:
        wait_for(lambda: fetch(base + "/healthz")[0] == 200, timeout=30)
        wait_for(lambda: 'trainwarden_notifications_failed_total{severity="critical"}' in fetch(base + "/metrics")[1]
                 and "} 0.0" not in fetch(base + "/metrics")[1].split('failed_total{severity="critical"}')[1][:6],
                 timeout=30, interval=0.5)
        for path in ("/", "/metrics", "/api/runs", "/api/runs/exp/log?lines=100", "/healthz"):
            outputs.append(fetch(base + path)[1])
        for argv in (["status", base], ["status", "--json", base], ["tail", base, "--run", "exp"],
                     ["notify-test", "--config.file", str(config)],
                     ["status", "--config.file", str(config), str(root)]):
            result = run_cli(*argv)
            outputs.append(result.stdout + result.stderr)
    finally:
        outputs.append(_stop(agent))
    # the bridge: a webhook with the right token, delivered to the dead targets
    bport = free_port()
    bridge = subprocess.Popen([sys.executable, "-m", "trainwarden", "bridge", "--config.file", str(config),
                               "--web.listen-address", f"127.0.0.1:{bport}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    try:
        bbase = f"http://127.0.0.1:{bport}"
        wait_for(lambda: fetch(bbase + "/metrics")[0] == 200, timeout=30)
        alert = {"status": "firing", "labels": {"alertname": "TrainingLossExplosion", "severity": "critical",
                                                "run": "exp", "instance": "box"},
                 "annotations": {"summary": "loss", "description": "d"}, "startsAt": "2026-11-26T10:00:00Z",
                 "fingerprint": "abc"}
        code, body = fetch(bbase + "/alerts", "POST", json.dumps({"alerts": [alert]}).encode(),
                           {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        outputs.append(body)
        assert code == 200
        code, body = fetch(bbase + "/alerts", "POST", b"{}", {"Authorization": "Bearer wrong"})
        assert code == 401
        outputs.append(body)
        time.sleep(2)  # a delivery attempt fails and is logged
        outputs.append(fetch(bbase + "/metrics")[1])
    finally:
        outputs.append(_stop(bridge))
    # a config error next to a secret
    bad = tmp_path / "bad.yml"
    bad.write_text(f"notify:\n  targets:\n    - url: json://u:{SECRET}@h/x\n      severities: [loud]\n      colour: {SECRET}\n",
                   encoding="utf-8")
    result = run_cli("status", "--config.file", str(bad), str(root))
    assert result.returncode == 2
    outputs.append(result.stdout + result.stderr)
    # a URL apprise cannot parse, refused at start: nothing says which part is the secret, so only its scheme shows
    result = run_cli("notify-test", "--notify", f"tgram://{SECRET}/{SECRET}?token={SECRET}")
    assert result.returncode == 2 and "tgram://****" in result.stderr
    outputs.append(result.stdout + result.stderr)
    everything = "\n".join(outputs)
    assert "TrainingLossExplosion" in everything and "failed" in everything  # the outputs were really produced
    for secret in (SECRET, TOKEN):
        assert secret not in everything, everything[max(0, everything.find(secret) - 300):everything.find(secret) + 100]
    for f in tmp_path.joinpath("state").rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(encoding="utf-8", errors="replace"), f
