"""The user's four monitors done well: `analyze` (text, JSON, self-contained HTML), `live` (drawn once, and
quitting on q in a real terminal), and the agent's page rendered by headless Chromium."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import DESIGN, REAL, free_port, require_binary, run_cli, wait_for
from rich.console import Console

from trainwarden.ingest.fleet import Fleet
from trainwarden.judge.policy import DEFAULT_POLICY
from trainwarden.model import RunState
from trainwarden.outputs.status import status_report
from trainwarden.outputs.views import analyze as analyze_view
from trainwarden.outputs.views import live as live_view
from trainwarden.outputs.views.page import status_page
from trainwarden.outputs.views.status_table import render_status

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
    cfg = tmp_path / "live.yml"  # judged as if watched while they ran (years-old runs are history: never red)
    cfg.write_text("policy:\n  history_after_seconds: 1.0e+12\n", encoding="utf-8")
    agent = subprocess.Popen([sys.executable, "-m", "trainwarden", "watch", str(root), "--config.file", str(cfg),
                              "--web.listen-address", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
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


# -- finding 12: every view, over every real run, says only what it knows, in the run's own words ---------------

NOW = time.time()  # the real logs were written in 2023: read as history, as a user reads them today
ITERATION_RUNS = ("mmengine_iter_mmseg_v0.7.3", "mmengine_iter_mmseg_10k_building", "mmengine_iter_mmseg_watermelon")
# an unknown value written as Python writes it, a nan, or a 0.0% that stands for "not known"
UNKNOWN_AS_VALUE = re.compile(r"\bNone\b|\bnan\b(?!/inf)|(?<![\d.])0\.0%")


def views_of(root) -> dict[str, dict[str, str]]:
    """Every view's text of every run under `root`: status, live, the page, analyze (text, HTML, JSON), messages."""
    fleet = Fleet([root])
    fleet.rediscover()
    snaps = {s.run: s for s in fleet.snapshots()}
    report = status_report(list(snaps.values()), DEFAULT_POLICY, NOW)
    views: dict[str, dict[str, str]] = {}
    for run in report.runs:
        one = dataclasses.replace(report, runs=(run,))
        table = Console(record=True, width=200, file=io.StringIO())
        render_status(one, table, now=NOW)
        live = Console(record=True, width=200, file=io.StringIO())
        live.print(live_view.render(one))
        a = analyze_view.analysis(run, snaps[run.run], DEFAULT_POLICY)
        text = Console(record=True, width=2000, file=io.StringIO())  # no wrapping: a command reads whole
        analyze_view.render_text(a, text)
        messages = "\n".join(f"{c.summary}\n{c.description}" for c in run.conditions)
        views[run.run] = {"status": table.export_text(), "live": live.export_text(), "page": status_page(one).decode(),
                          "analyze": text.export_text(), "analyze.html": analyze_view.render_html(a),
                          "analyze.json": json.dumps(a), "messages": messages, "state": run.state.value}
    return views


@pytest.fixture(scope="module")
def real_views():
    return views_of(REAL)


@pytest.mark.parametrize("root", [REAL, DESIGN], ids=["real-logs", "design-shapes"])
def test_no_view_writes_an_unknown_value_as_none_nan_or_zero(root, real_views):
    views = real_views if root == REAL else views_of(root)

    def shown(view: str, text: str) -> str:  # what a reader sees: the text of a page, not its markup
        if "html" not in view and view != "page":
            return text
        return re.sub(r"<[^>]+>", " ", re.sub(r"<svg.*?</svg>", " ", text, flags=re.S))

    found = {f"{run}/{view}": sorted(set(UNKNOWN_AS_VALUE.findall(shown(view, text))))
             for run, texts in views.items() for view, text in texts.items()
             if view not in ("analyze.json", "state") and UNKNOWN_AS_VALUE.search(shown(view, text))}
    assert not found


@pytest.mark.parametrize("run", ITERATION_RUNS)
def test_an_iteration_based_run_is_told_in_iterations(run, real_views):
    texts = real_views[run]
    html = texts["analyze.html"]
    assert "<th>iteration</th>" in html and "<th>epoch</th>" not in html
    for view in ("status", "live", "page", "analyze", "analyze.html"):
        assert not re.search(r"\bepoch \d", texts[view]), view  # an epoch it never counted
        assert not re.search(r"\biter \d", texts[view]), view  # "iteration", in full, as the log's own loop says


def test_a_finished_run_is_not_told_to_resume_or_shrink_its_batch(real_views):
    finished = {run: t for run, t in real_views.items() if t["state"] == RunState.FINISHED.value}
    assert len(finished) >= 8
    for run, texts in finished.items():
        commands = json.loads(texts["analyze.json"])["next_step"]["commands"]
        assert not [k for k in commands if "resume" in k or "batch" in k], run
        for view in ("analyze", "analyze.html", "messages"):
            assert "--resume" not in texts[view] and "half the batch" not in texts[view], (run, view)


def test_a_run_whose_log_saved_a_checkpoint_never_reads_restart_from_scratch(real_views):
    texts = real_views["mmdet2x_retinanet_voc"]  # the log ends with `Saving checkpoint at 4 epochs`, no .pth copied
    for view, text in texts.items():
        assert "restart from scratch" not in text, view
    commands = json.loads(texts["analyze.json"])["next_step"]["commands"]
    assert any("resume" in k for k in commands)  # it stopped mid-training: resuming is the step
    assert "epoch_4.pth" in texts["analyze"]


def test_no_step_is_listed_twice(real_views):
    for run, texts in real_views.items():
        commands = json.loads(texts["analyze.json"])["next_step"]["commands"]
        assert len(set(commands.values())) == len(commands), run
        for command in commands.values():  # the advice's own numbered steps and the command list never repeat one
            assert texts["analyze"].count(command) <= 1, (run, command)
        for block in texts["messages"].split("\n\n"):
            steps = [line.split(". ", 1)[1] for line in block.splitlines() if re.match(r"\d+\. ", line)]
            assert len(set(steps)) == len(steps), (run, block)


def test_red_and_success_never_stand_together_unexplained(real_views):
    for run, texts in real_views.items():
        a = json.loads(texts["analyze.json"])
        if a["health"] == "red" and a["verdict"]["verdict"] == "success":
            assert "red because" in texts["analyze"] and "red because" in texts["analyze.html"], run


def test_a_run_without_a_known_batch_size_gets_each_command_once():
    """With no batch size in the config dump there is no half to take: "resume with half the batch size" would be the
    resume command again, listed twice."""
    fleet = Fleet([REAL / "mmdet2x_retinanet_voc"])  # stopped mid-training: resuming is a step
    fleet.rediscover()
    snap = fleet.snapshots()[0]
    run = dataclasses.replace(status_report([snap], DEFAULT_POLICY, NOW).runs[0], batch_size=None)
    commands = analyze_view.analysis(run, snap, DEFAULT_POLICY)["next_step"]["commands"]
    assert len(set(commands.values())) == len(commands), commands
