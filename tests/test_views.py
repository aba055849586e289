"""The user's four monitors done well: `analyze` (text, JSON, self-contained HTML), `live` (drawn once, and
quitting on q in a real terminal), and the agent's page rendered by headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import DESIGN, REAL, free_port, require_binary, run_cli, wait_for

KAIST = DESIGN / "mmengine_kaist_resumed"


def test_analyze_json_has_the_whole_story():
    result = run_cli("analyze", str(KAIST), "--json", "--profile", "guide")  # the user's run, by the user's guide
    assert result.returncode == 3  # red
    a = json.loads(result.stdout)
    assert a["verdict"]["verdict"] == "failed" and "below 0.60" in a["verdict"]["rule"]  # ended: failed, not degraded
    assert [c["met"] for c in a["plan_b"]] == [False, False] and len(a["plan_b"]) == 2
    assert a["early_stop"]["triggered"] and any("fluctuation band" in h for h in a["early_stop"]["misfire_hints"])
    assert any("back up the best checkpoint" in s for s in a["early_stop"]["recovery"])
    resume = a["next_step"]["commands"]["resume from the newest checkpoint"]
    assert resume.endswith(f"--resume {KAIST.absolute() / 'epoch_3.pth'}")
    assert a["baselines"] == {"failed stage-2.1 run (epoch 3)": 0.5265, "stage-1 LLVIP pre-training (epoch 21)": 0.6288}
    assert [(e["epoch"], e["met"]) for e in a["evaluations"]] == [(1, True), (2, False), (3, False)]
    assert len(a["history"]) >= 5  # every train line of both sessions, for the plots


def test_analyze_text_and_usage():
    out = run_cli("analyze", str(REAL / "mmdet2x_retinanet_voc"), "--profile", "guide").stdout
    assert "loss trend: mean" in out and "verdict" in out and "Plan B condition" in out
    result = run_cli("analyze", str(REAL))
    assert result.returncode == 2 and "--run" in result.stderr
    assert run_cli("analyze", str(REAL), "--run", "mmengine_iter_mmseg_v0.7.3", "--json").returncode == 0


def test_analyze_html_is_self_contained_and_renders(tmp_path):
    chromium = require_binary("chromium")
    page = tmp_path / "analysis.html"
    result = run_cli("analyze", str(REAL / "mmdet2x_retinanet_voc"), "--html", str(page))
    assert result.returncode == 3 and page.exists()
    text = page.read_text(encoding="utf-8")
    assert text.count("<svg") == 3 and "<script" not in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--no-first-run", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,1600", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20000


def test_status_page_in_headless_chromium(tmp_path):
    chromium = require_binary("chromium")
    port = free_port()
    root = tmp_path / "runs"
    shutil.copytree(REAL / "mmdet2x_retinanet_voc", root / "mmdet2x_retinanet_voc")
    shutil.copytree(REAL / "mmengine_iter_mmseg_v0.7.3", root / "mmengine_iter_mmseg_v0.7.3")
    agent = subprocess.Popen([sys.executable, "-m", "trainwarden", "watch", str(root), "--web.listen-address",
                              f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def dom():
            out = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                  "--disable-background-networking", "--no-first-run", "--disable-component-update",
                                  "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                                  f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=120).stdout
            return out if "mmengine_iter_mmseg_v0.7.3" in out else None

        html = wait_for(dom, timeout=60, interval=1)
        assert "mmdet2x_retinanet_voc" in html and ">red<" in html and ">green<" in html
        assert html.count("<svg") >= 4  # loss and evaluation sparklines of both runs
        assert "http-equiv=\"refresh\"" in html and "<script" not in html
    finally:
        agent.terminate()
        agent.wait(timeout=20)


def test_live_draws_once():
    out = run_cli("live", str(KAIST), str(REAL / "mmdet2x_retinanet_voc"), "--once").stdout
    assert "mmengine_kaist_resumed" in out and "mmdet2x_retinanet_voc" in out and "q or Ctrl-C quits" in out


@pytest.mark.skipif(os.name == "nt", reason="a POSIX pseudo-terminal")
def test_live_quits_on_q_in_a_real_terminal():
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: trainwarden live in a terminal
        os.execv(sys.executable, [sys.executable, "-m", "trainwarden", "live", str(KAIST), "--interval", "0.5"])
    exited = None  # the child's wait status once it has ended; (0, 0) from waitpid(WNOHANG) means still running
    try:
        out = b""
        deadline = time.monotonic() + 30
        while b"q or Ctrl-C quits" not in out and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                out += os.read(fd, 65536)
        assert b"mmengine_kaist_resumed" in out
        os.write(fd, b"q")
        deadline = time.monotonic() + 10
        while exited is None and time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                exited = status
            elif select.select([fd], [], [], 0.2)[0]:
                try:
                    os.read(fd, 65536)
                except OSError:
                    pass
    finally:
        if exited is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert exited is not None, "live was still running 10 s after q"
    assert os.WIFEXITED(exited) and os.WEXITSTATUS(exited) == 0
