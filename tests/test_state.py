"""Folding records into a run's state, and judging its lifecycle state against an injected clock."""

from __future__ import annotations

import pytest
from conftest import REAL

from trainwarden.judge.lifecycle import lifecycle
from trainwarden.judge.policy import Policy
from trainwarden.model import (
    CheckpointSaved,
    ConfigFacts,
    EarlyStopTriggered,
    EvalProgress,
    EvalRecord,
    Resumed,
    TrainRecord,
)
from trainwarden.parse.jsonlogs import parse_mmcv_json_line
from trainwarden.parse.stream import parse_lines
from trainwarden.state import HISTORY_POINTS, MAX_EVALUATIONS, RECENT_TRAIN, RunState

T0 = 1_762_900_000.0
IPE = 1000
POLICY = Policy(stall_pace_multiplier=10, stall_floor_seconds=300, stall_eval_multiplier=2)


def train(ts, epoch, it, loss=0.3):
    return TrainRecord(ts, epoch, it, IPE, None, None, {"loss": loss, "lr": 4e-5}, 100.0)


def run_with(records, session="s1") -> RunState:
    state = RunState("r", "/w", "mmengine")
    state.apply_all([ConfigFacts(None, loop="epoch", max_epochs=2, val_interval=1)], session)
    state.apply_all(records, session)
    return state


def epoch_lines(epoch, start_ts, step=20.0):
    return [train(start_ts + k * step, epoch, it) for k, it in enumerate(range(50, IPE + 1, 50))]


def judge(state, now):
    return lifecycle(state.snapshot(), POLICY, now)


def test_running_then_stalled_against_its_own_pace():
    lines = epoch_lines(1, T0)[:10]  # a line every 20 s: window max(300, 10 x 20) = 300 s
    state = run_with(lines)
    last = lines[-1].ts
    assert judge(state, last + 60).state == "running"
    assert judge(state, last + 299).state == "running"
    j = judge(state, last + 301)
    assert j.state == "stalled" and j.stall_seconds == 300


def test_slow_run_gets_a_longer_window():
    lines = [train(T0 + k * 100, 1, 50 * (k + 1)) for k in range(10)]  # a line every 100 s
    state = run_with(lines)
    assert judge(state, lines[-1].ts + 900).state == "running"
    assert judge(state, lines[-1].ts + 1001).state == "stalled"


def test_a_validation_as_long_as_the_last_one_is_not_a_stall():
    first = epoch_lines(1, T0)
    end1 = first[-1].ts
    records = [*first, CheckpointSaved(end1 + 5, "epoch", 1), EvalRecord(end1 + 600, "val", 1, None, {"mAP": 0.6})]
    second = epoch_lines(2, end1 + 620)
    state = run_with(records + second)
    end2 = second[-1].ts
    assert judge(state, end2 + 900).state == "running"  # the last validation took 600 s: allow 1200
    assert judge(state, end2 + 1201).state == "finished"  # training reached its end: quiet means finished


def test_finished_needs_the_final_evaluation_when_validations_run():
    records = [*epoch_lines(1, T0), EvalRecord(T0 + 1000, "val", 1, None, {"mAP": 0.6})]
    records += epoch_lines(2, T0 + 1100)
    end = records[-1].ts
    records.append(CheckpointSaved(end + 1, "epoch", 2))
    state = run_with(records)
    assert judge(state, end + 10).state == "running"  # waiting for the epoch-2 validation
    state.apply(EvalProgress(end + 30, "val"), "s1")
    assert judge(state, end + 40).state == "running"
    state.apply(EvalRecord(end + 60, "val", 2, None, {"mAP": 0.63}), "s1")
    j = judge(state, end + 61)
    assert j.state == "finished" and j.reached_end


def test_early_stop_then_a_resumed_session_runs_again():
    records = [*epoch_lines(1, T0), EarlyStopTriggered(T0 + 999, "no_improvement", None, 0.6, "stop")]
    state = run_with(records)
    assert judge(state, T0 + 1000).state == "early_stopped"
    state.apply_all([Resumed(T0 + 2000, 1, 1000), train(T0 + 2020, 2, 50)], "s2")
    assert judge(state, T0 + 2030).state == "running"


def test_unknown_without_anything_to_judge():
    assert judge(RunState("r", "/w", "unknown"), T0).state == "unknown"


def test_iteration_based_validation_takes_the_iteration_before_it():
    state = RunState("r", "/w", "mmengine")
    state.apply_all([
        TrainRecord(T0, None, None, None, 400, 3000, {"loss": 0.1}, 10.0),
        EvalRecord(T0 + 5, "val", None, None, {"mIoU": 24.59}),
    ], "s")
    assert state.snapshot().evaluations[0].iteration == 400


def test_a_resumed_run_evaluating_an_epoch_again_replaces_the_result():
    state = run_with([*epoch_lines(1, T0), EvalRecord(T0 + 1000, "val", 1, None, {"mAP": 0.58})])
    state.apply_all([Resumed(T0 + 2000, 0, 0), *epoch_lines(1, T0 + 2100),
                     EvalRecord(T0 + 3000, "val", 1, None, {"mAP": 0.61})], "s2")
    evals = state.snapshot().evaluations
    assert len(evals) == 1 and evals[0].metrics["mAP"] == 0.61 and evals[0].iteration == IPE


def test_global_iteration_across_epochs():
    state = run_with([train(T0, 3, 250)])
    assert state.snapshot().iteration == 2 * IPE + 250


def test_nonfinite_loss_counts_once_per_line():
    state = run_with([train(T0, 1, 50, float("nan")), train(T0 + 20, 1, 100, float("inf")), train(T0 + 40, 1, 150)])
    snap = state.snapshot()
    assert snap.counts.errors_total["nonfinite_loss"] == 2


def test_memory_stays_bounded_whatever_the_log_length():
    state = RunState("r", "/w", "mmengine")
    for k in range(200_000):
        state.apply(TrainRecord(T0 + k, None, None, None, k, None, {"loss": 0.3}, None), "s")
    for k in range(MAX_EVALUATIONS + 500):
        state.apply(EvalRecord(T0 + k, "val", None, k, {"mIoU": 1.0}), "s")
    snap = state.snapshot()
    assert len(snap.recent) == RECENT_TRAIN
    assert HISTORY_POINTS // 2 <= len(snap.history) <= HISTORY_POINTS + 1
    assert len(snap.evaluations) == MAX_EVALUATIONS
    iterations = [p.iteration for p in snap.history]
    assert iterations == sorted(iterations) and iterations[-1] > 190_000  # spread over the whole run


@pytest.mark.parametrize("sampled", [True, False])
def test_a_sample_restarts_the_recent_window(sampled):
    state = run_with([train(T0, 1, 50), train(T0 + 20, 1, 100)])
    rec = train(T0 + 5000, 2, 500)
    state.apply(TrainRecord(rec.ts, 2, 500, IPE, None, None, rec.values, None, sampled=sampled), "s1")
    assert len(state.snapshot().recent) == (0 if sampled else 3)


def test_the_first_validation_gets_time_even_without_progress_lines():
    lines = epoch_lines(1, T0)
    end = lines[-1].ts
    state = run_with([*lines, CheckpointSaved(end + 5, "epoch", 1)])  # mmcv: checkpoint, then a silent validation
    assert judge(state, end + 1500).state == "running"
    assert judge(state, end + 1806).state == "stalled"


def test_an_mmseg0_evaluation_line_is_an_evaluation_at_the_runs_iteration():
    """mmcv's IterBasedRunner (MMSeg 0.x) writes its evaluation as `Iter [500/160000]  lr: ..., aAcc: ...`: the
    run stays at its own iteration and the evaluation is at it (issue 12, finding 11)."""
    from trainwarden.parse.messages import parse_message

    state = RunState("r", "/w", "mmcv")
    lines = [f"Iter [{it}/160000]\tlr: 9.9e-03, eta: 1 day, 2:00:00, time: 0.6, data_time: 0.01, memory: 7999, "
             f"decode.loss_ce: 0.5, decode.acc_seg: 80.0, loss: 0.5" for it in range(15900, 16001, 50)]
    lines.append("Iter [500/160000]\tlr: 9.969e-03, aAcc: 0.7926, mIoU: 0.4183, mAcc: 0.5221")
    lines.append("Iter [16050/160000]\tlr: 9.9e-03, eta: 1 day, 2:00:00, time: 0.6, data_time: 0.01, memory: 7999, "
                 "decode.loss_ce: 0.5, decode.acc_seg: 80.0, loss: 0.5")
    state.apply_all([parse_message(line, T0 + k) for k, line in enumerate(lines)], "s1")
    snap = state.snapshot()
    assert snap.iteration == 16050 and snap.max_iterations == 160000
    (evaluation,) = snap.evaluations
    assert (evaluation.mode, evaluation.iteration, evaluation.metrics["mIoU"]) == ("val", 16000, 0.4183)


def test_an_iteration_loop_never_goes_backwards_within_a_session():
    state = RunState("r", "/w", "mmengine")
    its = [TrainRecord(T0 + k, None, None, None, it, 3000, {"loss": 0.3}, 100.0) for k, it in enumerate((100, 150, 50))]
    state.apply_all(its, "s1")
    assert state.snapshot().iteration == 150


# -- issue 12 follow-ups on real mmcv logs ------------------------------------------------------------------------
CIFAR10 = REAL / "mmcls0x_epoch_cifar10" / "20230205_164050.log"


@pytest.mark.parametrize("order", ["evaluation first", "loss first"])
def test_a_val_workflow_loss_and_an_evaluation_at_one_epoch_are_both_kept(order):
    """mmcls 0.x with `workflow = [('train', 1), ('val', 1)]` logs the EvalHook's `accuracy_top-1` and the val
    workflow's `loss` as two `Epoch(val) [20][40]` rows: the evaluation's metric is not lost to the loss row."""
    rows = [EvalRecord(T0, "val", 20, None, {"accuracy_top-1": 94.82}), EvalRecord(T0 + 3, "val", 20, None, {"loss": 0.22})]
    state = run_with(rows if order == "evaluation first" else rows[::-1])
    (evaluation,) = state.snapshot().evaluations
    assert evaluation.metrics == {"accuracy_top-1": 94.82, "loss": 0.22}


def test_the_real_mmcls0x_val_workflow_keeps_every_evaluation_in_text_and_json():
    text = parse_lines(CIFAR10.read_text(encoding="utf-8").splitlines(), 2023)
    json_rows = [r for line in CIFAR10.with_suffix(".log.json").read_text(encoding="utf-8").splitlines()
                 if (r := parse_mmcv_json_line(line)) is not None]
    for records in (text, json_rows):
        state = RunState("r", "/w", "mmcv")
        state.apply_all(records, "s1")
        evals = state.snapshot().evaluations
        assert [e.epoch for e in evals if "accuracy_top-1" in e.metrics] == [5, 10, 15, 20]
        assert [e.epoch for e in evals if "loss" in e.metrics] == [4, 8, 12, 16, 20]


def test_a_resumed_session_evaluating_the_same_epoch_still_replaces_what_it_logged_again():
    state = run_with([EvalRecord(T0, "val", 3, None, {"accuracy_top-1": 90.0}),
                      EvalRecord(T0 + 3, "val", 3, None, {"loss": 0.3})])
    state.apply_all([EvalRecord(T0 + 100, "val", 3, None, {"accuracy_top-1": 91.0})], "s2")
    (evaluation,) = state.snapshot().evaluations
    assert evaluation.metrics == {"accuracy_top-1": 91.0} and evaluation.session == "s2"


def mmcv_train(ts, epoch, it, per_epoch=196):
    return TrainRecord(ts, epoch, it, per_epoch, None, None, {"loss": 0.3, "lr": 1e-4}, 1.0)


def test_without_a_train_line_the_epoch_is_what_checkpoints_and_evaluations_say():
    """mmcls 0.x with a log interval longer than an epoch writes no train line: `Saving checkpoint at 20 epochs`
    and `Epoch(val) [20][3]` still say where the run is."""
    state = RunState("r", "/w", "mmcv")
    state.apply_all([ConfigFacts(None, loop="epoch", max_epochs=20)], "s1")
    for epoch in range(1, 21):
        state.apply_all([CheckpointSaved(T0 + 10 * epoch, "epoch", epoch),
                         EvalRecord(T0 + 10 * epoch + 5, "val", epoch, None, {"accuracy_top-1": 80.0 + epoch})], "s1")
        snap = state.snapshot()
        assert snap.epoch == epoch and snap.progress_ratio == pytest.approx(epoch / 20)
    assert len(state.snapshot().evaluations) == 20


def test_an_iteration_run_without_a_train_line_is_at_its_saved_iteration():
    state = RunState("r", "/w", "mmengine")
    state.apply_all([ConfigFacts(None, loop="iteration", max_iterations=2000), CheckpointSaved(T0, "iteration", 500),
                     EvalRecord(T0 + 5, "val", None, None, {"mIoU": 40.0}), CheckpointSaved(T0 + 10, "iteration", 1000),
                     EvalRecord(T0 + 15, "val", None, None, {"mIoU": 41.0})], "s1")
    snap = state.snapshot()
    assert snap.iteration == 1000 and snap.progress_ratio == 0.5
    assert [e.iteration for e in snap.evaluations] == [500, 1000]  # two evaluations, not one replaced


def test_a_finished_epoch_counts_whole_in_the_progress():
    """The last train line of a 20-epoch run is `[20][150/196]` (98.8 %); the epoch's checkpoint after it says
    epoch 20 is done: 100 %."""
    state = RunState("r", "/w", "mmcv")
    state.apply_all([ConfigFacts(None, loop="epoch", max_epochs=20), mmcv_train(T0, 20, 150)], "s1")
    assert state.snapshot().progress_ratio == pytest.approx((19 * 196 + 150) / (20 * 196))  # its real fraction
    state.apply_all([CheckpointSaved(T0 + 1, "epoch", 20)], "s1")
    snap = state.snapshot()
    assert (snap.epoch, snap.iteration, snap.progress_ratio) == (20, 20 * 196, 1.0)
    assert snap.epoch_iteration == 196


def test_a_run_mid_epoch_after_a_saved_epoch_reads_its_train_line():
    """What could now read wrongly: the previous epoch's checkpoint never moves a run past its own train line,
    and a train line of an earlier epoch (a resume from an older checkpoint) brings the epoch back to it."""
    state = RunState("r", "/w", "mmcv")
    state.apply_all([ConfigFacts(None, loop="epoch", max_epochs=20), mmcv_train(T0, 4, 196),
                     CheckpointSaved(T0 + 1, "epoch", 4), EvalRecord(T0 + 2, "val", 4, None, {"loss": 0.2}),
                     mmcv_train(T0 + 10, 5, 50)], "s1")
    snap = state.snapshot()
    assert (snap.epoch, snap.iteration, snap.epoch_iteration) == (5, 4 * 196 + 50, 50)
    state.apply_all([CheckpointSaved(T0 + 20, "epoch", 5), CheckpointSaved(T0 + 30, "epoch", 6)], "s1")
    assert state.snapshot().epoch == 6
    state.apply_all([Resumed(T0 + 40, 3, 3 * 196), mmcv_train(T0 + 50, 4, 50)], "s2")
    snap = state.snapshot()
    assert (snap.epoch, snap.iteration) == (4, 3 * 196 + 50)


def test_an_epoch_loop_logged_by_iteration_stays_in_iterations():
    """MMSeg's EpochBasedTrainLoop with `log_processor by_epoch=False` logs `Iter(train) [400/400]` and `Saving
    checkpoint at 50 epochs`: the run is told in the unit of its train lines."""
    state = RunState("r", "/w", "mmengine")
    state.apply_all([TrainRecord(T0, None, None, None, 400, 400, {"loss": 0.1}, 0.0),
                     CheckpointSaved(T0 + 1, "epoch", 50)], "s1")
    snap = state.snapshot()
    assert (snap.epoch, snap.iteration, snap.progress_ratio) == (None, 400, 1.0)
