"""The command line as a user meets it: real child processes, exit codes, errors that say what is wrong."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import DESIGN, REAL, free_port, run_cli, wait_for


def test_version_and_help():
    assert run_cli("--version").stdout.startswith("trainwarden ")
    out = run_cli("--help").stdout
    for command in ("watch", "status", "tail", "demo"):
        assert command in out


def test_usage_errors_exit_2():
    assert run_cli("status").returncode == 2
    result = run_cli("status", "/no/such/folder")
    assert result.returncode == 2 and "/no/such/folder" in result.stderr
    assert run_cli("frobnicate").returncode == 2
    assert run_cli("tail", str(REAL), "-n", "-1").returncode == 2


def test_nothing_found_exits_1(tmp_path):
    result = run_cli("status", str(tmp_path))
    assert result.returncode == 1 and "no runs found" in result.stderr


def test_bad_config_reports_every_problem_at_once(tmp_path):
    cfg = tmp_path / "bad.yml"
    cfg.write_text("watch: 3\nweb:\n  listen_address: nowhere\n  colour: red\npolicy:\n  stall_floor_seconds: -5\n"
                   "  eval_key: 7\nsurprise: true\n", encoding="utf-8")
    result = run_cli("status", "--config.file", str(cfg), str(REAL))
    assert result.returncode == 2
    for fragment in ("watch:", "listen_address", "web.colour: unknown", "stall_floor_seconds", "eval_key",
                     "surprise: unknown"):
        assert fragment in result.stderr, fragment
    assert len(result.stderr.strip().splitlines()) == 6


def test_config_file_adds_paths_and_policy(tmp_path):
    cfg = tmp_path / "ok.yml"
    cfg.write_text(f"watch: [{json.dumps(str(REAL / 'mmdet2x_retinanet_voc'))}]\npolicy:\n  eval_key: AP50\n",
                   encoding="utf-8")
    result = run_cli("status", "--json", "--config.file", str(cfg))
    assert result.returncode == 0, result.stderr  # a 2023 run: history, never red
    run = json.loads(result.stdout)["runs"][0]
    assert run["eval_key"] == "AP50" and run["best"] == {"key": "AP50", "value": 0.85, "epoch": 2,
                                                         "iteration": 2 * 4139, "checkpoint": None}


def test_tail_local(tmp_path):
    log = REAL / "mmengine_iter_mmseg_v0.7.3" / "20230616_181232.log"
    want = log.read_text(encoding="utf-8").splitlines()[-3:]
    assert run_cli("tail", str(REAL / "mmengine_iter_mmseg_v0.7.3"), "-n", "3").stdout.splitlines() == want
    assert run_cli("tail", str(log), "-n", "3").stdout.splitlines() == want
    result = run_cli("tail", str(REAL))
    assert result.returncode == 2 and "--run" in result.stderr
    result = run_cli("tail", str(REAL), "--run", "mmengine_iter_mmseg_v0.7.3", "-n", "1")
    assert result.stdout.splitlines() == want[-1:]
    # the newest session of a resumed run
    out = run_cli("tail", str(DESIGN / "mmengine_kaist_resumed"), "-n", "1").stdout
    assert "did not improve" in out


def test_tail_of_a_gbk_crlf_log():
    out = run_cli("tail", str(DESIGN / "windows_gbk_crlf"), "-n", "3").stdout.splitlines()
    assert "数据集加载完成, 共 45756 张图像" in out[0] and not any(line.endswith("\r") for line in out)


@pytest.fixture
def watcher(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainwarden", "watch", str(REAL), "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            with urllib.request.urlopen(base + "/api/runs", timeout=2) as r:
                return len(json.loads(r.read())["runs"]) == sum(p.is_dir() for p in REAL.iterdir())
        except OSError:
            return False

    wait_for(up, timeout=30, interval=0.2)
    yield proc, base, port
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_watch_serves_and_remote_status_and_tail_read_it(watcher):
    _, base, _ = watcher
    local = json.loads(run_cli("status", "--json", str(REAL)).stdout)
    remote = run_cli("status", "--json", base)
    assert remote.returncode == 0, remote.stderr  # years-old runs: history, never red
    doc = json.loads(remote.stdout)
    assert [r["run"] for r in doc["runs"]] == [r["run"] for r in local["runs"]]
    assert all(r["source"] == base for r in doc["runs"])
    assert [r["evaluations"] for r in doc["runs"]] == [r["evaluations"] for r in local["runs"]]
    table = run_cli("status", base)
    assert table.returncode == 0 and "mmdet2x_retinanet_voc" in table.stdout
    result = run_cli("tail", base, "--run", "mmdet2x_retinanet_voc", "-n", "1")
    assert result.stdout.strip().endswith("Saving checkpoint at 4 epochs")
    result = run_cli("tail", base)
    assert result.returncode == 1 and "--run" in result.stderr


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM is POSIX")
def test_watch_stops_cleanly_on_sigterm(watcher):
    proc, _, _ = watcher
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_watch_on_a_taken_port_fails_with_a_clear_message(watcher):
    _, _, port = watcher
    result = run_cli("watch", str(REAL), "--web.listen-address", f"127.0.0.1:{port}", timeout=30)
    assert result.returncode == 1 and "in use" in result.stderr.lower()


def test_remote_agent_down_exits_1_but_shows_the_others():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        result = run_cli("status", f"http://127.0.0.1:{port}")
        assert result.returncode == 1 and "cannot read agent" in result.stderr
        result = run_cli("status", "--json", f"http://127.0.0.1:{port}", str(REAL / "mmdet2x_retinanet_voc"))
    assert result.returncode == 1 and f"127.0.0.1:{port}" in result.stderr
    assert [r["run"] for r in json.loads(result.stdout)["runs"]] == ["mmdet2x_retinanet_voc"]


def test_demo_replays_a_run_and_watches_it(tmp_path):
    from sinks import HttpSink

    port = free_port()
    start = time.monotonic()
    sink = HttpSink()
    try:
        result = run_cli("demo", "--dir", str(tmp_path), "--duration", "6", "--linger", "0", "--notify", sink.url(),
                         "--web.listen-address", f"127.0.0.1:{port}", timeout=120)
    finally:
        sink.close()
    titles = sink.titles() + [line for m in sink.received for line in m.get("message", "").splitlines()]
    assert any("[RED] TrainingLossExplosion - stage2_1_pure_detection" in t for t in titles), titles
    assert any("[RESOLVED] TrainingLossExplosion" in t for t in titles), titles
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 60
    assert f"http://127.0.0.1:{port}/metrics" in result.stdout
    assert "agent sees stage2_1_pure_detection" in result.stdout
    doc = json.loads(run_cli("status", "--json", str(tmp_path)).stdout)
    run = doc["runs"][0]
    assert run["run"] == "stage2_1_pure_detection" and run["state"] == "finished"
    assert [e["epoch"] for e in run["evaluations"]] == [1, 2, 3, 4, 5]
    assert run["evaluations"][-1]["metrics"]["pascal_voc/mAP"] == 0.6341
    assert run["iteration"] == run["max_iterations"] == 5 * 11439
    assert run["best"]["checkpoint"] == "best_pascal_voc_mAP_epoch_5.pth"
    assert run["config"] == "stage2_1_kaist_detonly_pure_detection.py"
