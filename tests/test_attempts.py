"""A second training in the same work dir is a new attempt; a resume is not (issue 12, finding 9)."""

from __future__ import annotations

import json

from conftest import DESIGN, REAL, run_cli
from test_run_end import HOUR, read, work_dir_of

from trainwarden.judge.judge import judge
from trainwarden.judge.policy import DEFAULT_POLICY
from trainwarden.model import CheckpointSaved, ConfigFacts, EvalRecord, Resumed, StatusReport, TrainRecord
from trainwarden.model.codec import from_plain
from trainwarden.outputs.status import document, status_report
from trainwarden.state import RunState

T0 = 1_762_900_000.0


def epoch(e: int, ts: float, per_epoch: int = 100) -> list:
    return [TrainRecord(ts + k, e, it, per_epoch, None, None, {"loss": 0.3, "time": 0.5}, 100.0)
            for k, it in enumerate(range(50, per_epoch + 1, 50))]


def trained(state: RunState, session: str, epochs: range, t: float, resumed_from: int | None = None) -> float:
    records = [ConfigFacts(t, loop="epoch", max_epochs=5, val_interval=1)]
    if resumed_from is not None:
        records.append(Resumed(t, resumed_from, resumed_from * 100))
    for e in epochs:
        records += [*epoch(e, t), CheckpointSaved(t + 3, "epoch", e), EvalRecord(t + 4, "val", e, None, {"mAP": 0.1 * e})]
        t += 10
    state.apply_all(records, session)
    return t


def test_training_again_from_the_first_epoch_is_a_new_attempt():
    state = RunState("r", "/w", "mmengine")
    t = trained(state, "s1", range(1, 6), T0)  # a finished 5-epoch run
    state.apply_all(epoch(1, t + 100) + epoch(2, t + 110), "s2")  # trained again, no resume: epoch 2 of 5
    snap = state.snapshot()
    j = judge(snap, DEFAULT_POLICY, t + 115)
    assert j.state == "running" and snap.epoch == 2 and snap.last_saved is None
    assert snap.evaluations == () and snap.best_line is None
    (first,) = snap.attempts
    assert first.sessions == ("s1",) and first.epoch == 5 and first.last_saved.number == 5
    assert [e.epoch for e in first.evaluations] == [1, 2, 3, 4, 5]
    assert snap.attempt_start_timestamp == t + 100


def test_a_resume_stays_one_attempt():
    state = RunState("r", "/w", "mmengine")
    t = trained(state, "s1", range(1, 3), T0)
    trained(state, "s2", range(3, 5), t + 100, resumed_from=2)
    snap = state.snapshot()
    assert snap.attempts == () and [e.epoch for e in snap.evaluations] == [1, 2, 3, 4]


def test_a_restart_in_the_first_epoch_without_a_resume_is_a_new_attempt_too():
    state = RunState("r", "/w", "mmengine")
    state.apply_all(epoch(1, T0)[:1], "s1")  # crashed in epoch 1, before any checkpoint
    state.apply_all(epoch(1, T0 + 100), "s2")
    assert len(state.snapshot().attempts) == 1


def test_an_iteration_loop_starts_over_only_from_its_first_logged_iteration():
    def lines(first: int, last: int, t: float) -> list:
        return [TrainRecord(t + k, None, None, None, it, 3000, {"loss": 0.3}, 100.0)
                for k, it in enumerate(range(first, last + 1, 50))]

    state = RunState("r", "/w", "mmengine")
    state.apply_all(lines(50, 950, T0), "s1")
    state.apply_all(lines(550, 700, T0 + 100), "s2")  # back to its checkpoint at 500 (a JSON log holds no resume line)
    assert state.snapshot().attempts == () and state.snapshot().iteration == 700
    state.apply_all(lines(50, 100, T0 + 200), "s3")  # from the start: a new attempt
    snap = state.snapshot()
    assert len(snap.attempts) == 1 and snap.attempts[0].iteration == 700 and snap.iteration == 100


def test_a_second_training_on_a_real_mmengine_work_dir(tmp_path):
    # session 1 trained 5 epochs (epoch_1..5.pth); session 2 trained again into the same work dir, stopped in
    # epoch 2: only its epoch_1.pth is its own
    work = work_dir_of("second_training", tmp_path)
    snap = read(work)
    assert (snap.epoch, snap.latest.epoch_iteration) == (2, 20)
    assert snap.newest_checkpoint.endswith("epoch_1.pth")
    assert [c.file for c in snap.checkpoints] == ["epoch_1.pth"]
    assert [(e.epoch, e.session) for e in snap.evaluations] == [(1, "20261201_114351")]
    (first,) = snap.attempts
    assert first.sessions == ("20261201_114311",) and first.epoch == 5 and len(first.evaluations) == 5
    j = judge(snap, DEFAULT_POLICY, snap.last_timestamp + 5)
    assert j.state == "running"
    report = status_report([snap], DEFAULT_POLICY, snap.last_timestamp + 5)
    plain = document(report)
    run = plain["runs"][0]
    assert run["sessions"] == ["20261201_114311", "20261201_114351"]
    assert [a["epoch"] for a in run["attempts"]] == [5] and len(run["attempts"][0]["evaluations"]) == 5
    again = from_plain(StatusReport, json.loads(json.dumps(plain)))  # an agent's document read back (status URL)
    assert again.runs[0].attempts == report.runs[0].attempts


def test_the_first_attempt_alone_ends_normally(tmp_path):
    # what the second training replaced: its first session alone is a finished run, with no attempts
    snap = read(work_dir_of("normal", tmp_path))
    assert snap.attempts == () and judge(snap, DEFAULT_POLICY, snap.last_timestamp + HOUR).state == "finished"


def test_real_resumed_and_multi_session_runs_stay_one_attempt():
    for path in (DESIGN / "mmengine_kaist_resumed", REAL / "mmengine_epoch_rtmdet_coco_v0.7.3"):
        run = json.loads(run_cli("status", "--json", str(path)).stdout)["runs"][0]
        assert run["attempts"] == [], path.name
