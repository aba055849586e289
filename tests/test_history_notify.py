"""Old runs in a watched folder are history: shown, never notified (issue 12, finding 3). Delivered for real
through apprise to a local HTTP sink (json://), beside a live run that does page."""

from __future__ import annotations

import json
import os
import shutil
import time

from conftest import REAL, wait_for
from test_notify import P, cond, no_tail, notifier

from trainwarden.app.agent import Agent
from trainwarden.ingest.seen import FirstSeen
from trainwarden.model import RunReport, RunState, StatusReport
from trainwarden.outputs.notify.service import Notifier
from trainwarden.outputs.notify.targets import Target


def test_a_history_run_queues_nothing(tmp_path, sink):
    n = notifier(tmp_path, [Target(sink.url())])
    old = RunReport(run="old", work_dir="/w/old", state=RunState.INTERRUPTED, history=True,
                    conditions=(cond(run="old"),))
    assert n.handle(StatusReport(runs=(old,)), no_tail) == 0


def test_a_watched_folder_of_old_runs_pages_only_for_the_live_one(tmp_path, sink):
    root = tmp_path / "work_dirs"
    shutil.copytree(REAL / "mmdet2x_retinanet_voc", root / "old_voc")  # stopped in 2023 at epoch 4 of 5
    session = root / "exp" / "20251111_180600"
    session.mkdir(parents=True)
    log = session / "20251111_180600.log"

    def train(it, loss):
        return (f"{time.strftime('%Y/%m/%d %H:%M:%S')}{P}Epoch(train)  [1][{it:>4}/1000]  lr: 4.0000e-05  eta: 0:10:00  "
                f"time: 0.4567  data_time: 0.0123  memory: 5432  loss: {loss}  loss_cls: 0.1200\n")

    log.write_text(train(50, "0.3000"), encoding="utf-8")
    n = Notifier([Target(sink.url())], tmp_path / "state", host="gpu-box")
    agent = Agent([root], "127.0.0.1", 0, poll_interval=0.2, rediscover_interval=0.5, notifier=n)
    agent.start()
    try:
        assert agent.ready.wait(20)
        with log.open("a", encoding="utf-8") as f:
            f.write(train(100, "nan"))  # a red under any policy
        wait_for(lambda: any("TrainingLossNotFinite" in t for t in sink.titles()), timeout=15, interval=0.05)
        # a page for the old run would have been queued with the first document, before this one, and delivered
        # first (or combined with it)
        assert [m["title"] for m in sink.received if "old_voc" in m["title"] or "old_voc" in m["message"]] == []
        runs = {r["run"]: r for r in agent.status_document()["runs"]}
        assert runs["old_voc"]["history"] and runs["old_voc"]["state"] == "interrupted"
        assert runs["old_voc"]["health"] == "green" and runs["exp"]["history"] is False
    finally:
        agent.stop()


def _stalled_two_days_ago(root):
    """A run whose last line is two days old (its file says so too)."""
    session = root / "exp" / "20251111_180600"
    session.mkdir(parents=True)
    log = session / "20251111_180600.log"
    then = time.time() - 2 * 86400
    stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(then))
    log.write_text(f"{stamp}{P}Epoch(train)  [1][  50/1000]  lr: 4.0000e-05  eta: 0:10:00  time: 0.4567  "
                   f"data_time: 0.0123  memory: 5432  loss: 0.3000  loss_cls: 0.1200\n", encoding="utf-8")
    os.utime(log, (then, then))
    return root / "exp"


def test_a_run_first_seen_live_before_a_restart_is_not_history(tmp_path):
    """The agent watched the run while it was live (the host's first-seen file says so: three days ago) and it went
    quiet two days ago: after a restart it is still judged (and paged) as a live run, not history; a run no agent of
    this host read before is history."""
    from trainwarden.ingest.fleet import Fleet
    from trainwarden.ingest.seen import FirstSeen
    from trainwarden.judge.judge import judge
    from trainwarden.judge.policy import DEFAULT_POLICY

    work_dir = _stalled_two_days_ago(tmp_path / "work_dirs")
    seen_file = tmp_path / "state" / "first_seen.json"
    FirstSeen(seen_file).first_seen(work_dir, time.time() - 3 * 86400)  # an earlier agent's first read

    def judged(seen):
        fleet = Fleet([tmp_path / "work_dirs"])
        fleet.seen = seen
        fleet.rediscover()
        (reader,) = fleet.current_readers()
        return judge(reader.state.snapshot(), DEFAULT_POLICY, time.time())

    after_restart = judged(FirstSeen(seen_file))
    # its log states no length and no process is seen: `ended`, a warning (a live process would make it stalled)
    assert not after_restart.history and after_restart.state == RunState.ENDED
    assert "TrainingEndedUnconfirmed" in {c.alert for c in after_restart.conditions}
    never_read = judged(FirstSeen(tmp_path / "other" / "first_seen.json"))
    assert never_read.history and not [c for c in never_read.conditions if c.severity.value != "info"]
    assert json.loads(seen_file.read_text()) and str(work_dir) not in seen_file.read_text()  # hashed, no path


def test_an_unwritable_first_seen_file_keeps_the_agent_going(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be")
    seen = FirstSeen(blocker / "first_seen.json")
    assert seen.first_seen(tmp_path, 100.0) == 100.0 and seen.first_seen(tmp_path, 200.0) == 100.0
    assert seen.write_errors == 1
