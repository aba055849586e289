"""`trainwarden status --json` on every real public run in tests/fixtures/real-logs (provenance in its README):
the right epoch or iteration and its maximum, the number of evaluations and the last value of the evaluated key,
the best checkpoint the log names, and no red for a run read months after it ended (finished or interrupted).

Every expectation below was read from the log itself (grep of the `Epoch(val)` / `Iter(val)` lines, the last
train line, `Saving checkpoint at ...`, `The best checkpoint ... is saved to ...`), never from the tool's output."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from conftest import REAL, run_cli


@dataclass(frozen=True)
class Truth:
    run: str
    unit: str  # "epoch" or "iteration": what the run's loop counts
    position: int  # the last epoch (or iteration) the log reached
    maximum: int | None  # max_epochs (or max_iters) from the config the log dumps
    key: str  # the evaluated key (save_best's key when the config names one)
    evaluations: int  # val evaluations that hold the key
    last: float  # its value in the last of them
    best: str | None  # the best checkpoint's file name, when the log names one
    state: str  # "finished" (a normal end) or "interrupted" (the log stops mid-training)


TRUTHS = [
    # MMEngine / MMDetection 3.x, 50 epochs of 8 iterations, CocoMetric every 5 epochs, no save_best.
    Truth("mmengine_epoch_mmdet3_balloon_v0.7.x", "epoch", 50, 50, "coco/bbox_mAP", 10, 0.747, None, "finished"),
    # MMEngine / MMPose RTMPose, 200 epochs, save_best='NME' (lower is better), val every 10 epochs.
    Truth("mmengine_epoch_mmpose_rtmpose_ear", "epoch", 200, 200, "NME", 20, 0.044784, "best_NME_epoch_200.pth",
          "finished"),
    # MMEngine / MMPretrain ResNet, 40 epochs, accuracy/top1 in percent every epoch, save_best='auto'.
    Truth("mmengine_epoch_mmpretrain_fruit30", "epoch", 40, 40, "accuracy/top1", 40, 93.44,
          "best_accuracy_top1_epoch_40.pth", "finished"),
    # MMEngine / MMSeg: an EpochBasedTrainLoop (50 epochs of 8) logged by iteration (log_processor by_epoch=False):
    # `Iter(train) [400/400]` and `Saving checkpoint at 50 epochs`; `Iter(val) [11/11] aAcc mIoU mAcc`.
    Truth("mmengine_iter_mmseg_watermelon", "iteration", 400, 400, "mIoU", 10, 57.64, None, "finished"),
    # MMEngine / MMSeg IterBasedTrainLoop 10 000 iterations, val every 500, then a final val after the last train line.
    Truth("mmengine_iter_mmseg_10k_building", "iteration", 10000, 10000, "mIoU", 20, 77.41, None, "finished"),
    # MMEngine / MMPose, 300 epochs planned, the log stops at `Epoch(train) [132][3/6]` with eta 2:04:27.
    Truth("mmengine_epoch_mmpose_interrupted", "epoch", 132, 300, "PCK", 13, 0.930839, "best_PCK_epoch_130.pth",
          "interrupted"),
    # One work dir, seven sessions: a false start, the 300-epoch training, then tools/test.py runs (Epoch(test)).
    Truth("mmengine_mmpose_sessions_train_then_test", "epoch", 300, 300, "PCK", 30, 0.972789, "best_PCK_epoch_260.pth",
          "finished"),
    # mmcls 0.x (mmcv 1.x), workflow [('train', 1), ('val', 1)]: the EvalHook's `accuracy_top-1` row every 5 epochs
    # and the val workflow's `loss` row at the same epoch are two different things.
    Truth("mmcls0x_epoch_cifar10", "epoch", 20, 20, "accuracy_top-1", 4, 94.82, "best_accuracy_top-1_epoch_5.pth",
          "finished"),
    # mmcls 0.x, no train line at all (log interval > iterations per epoch): the epoch is known from
    # `Saving checkpoint at 20 epochs` and `Epoch(val) [20][3]`.
    Truth("mmcls0x_epoch_flower", "epoch", 20, 20, "accuracy_top-1", 20, 92.1329, "best_accuracy_top-1_epoch_13.pth",
          "finished"),
    # The older fixtures (see the README).
    Truth("mmengine_epoch_rtmdet_coco_v0.7.3", "epoch", 200, 200, "coco/bbox_mAP", 20, 0.007,
          "best_coco_bbox_mAP_epoch_100.pth", "finished"),
    Truth("mmengine_iter_mmseg_v0.7.3", "iteration", 3000, 3000, "aAcc", 7, 89.72, "best_aAcc_iter_2400.pth", "finished"),
    Truth("mmdet2x_retinanet_voc", "epoch", 4, 5, "mAP", 3, 0.8474, None, "interrupted"),
    Truth("mmdet2x_maskrcnn_coco_balloon", "epoch", 10, 10, "bbox_mAP", 10, 0.7659, None, "finished"),
]


@pytest.fixture(scope="module")
def status_runs() -> dict[str, dict]:
    result = run_cli("status", "--json", str(REAL))
    doc = json.loads(result.stdout)
    return {r["run"]: r for r in doc["runs"]}


def file_name(path: str | None) -> str | None:
    return path.replace("\\", "/").rsplit("/", 1)[-1] if path else None


@pytest.mark.parametrize("truth", TRUTHS, ids=[t.run for t in TRUTHS])
def test_status_reads_the_run_as_its_log_says(truth: Truth, status_runs):
    assert (REAL / truth.run).is_dir()
    run = status_runs[truth.run]
    if truth.unit == "epoch":
        assert (run["epoch"], run["max_epochs"]) == (truth.position, truth.maximum)
    else:
        assert (run["iteration"], run["max_iterations"]) == (truth.position, truth.maximum)
    evaluated = [e for e in run["evaluations"] if e["mode"] == "val" and e["metrics"].get(truth.key) is not None]
    assert run["eval_key"] == truth.key
    assert len(evaluated) == truth.evaluations
    assert evaluated[-1]["metrics"][truth.key] == pytest.approx(truth.last)
    if truth.best is not None:
        assert run["best"] is not None and file_name(run["best"]["checkpoint"]) == truth.best


@pytest.mark.parametrize("truth", TRUTHS, ids=[t.run for t in TRUTHS])
def test_a_run_that_ended_long_ago_is_history_not_red(truth: Truth, status_runs):
    """Every one of these logs was last written in 2023: finished or interrupted, none pages today."""
    run = status_runs[truth.run]
    assert run["state"] == truth.state
    assert run["health"] != "red", [c["summary"] for c in run["conditions"]]
    assert not [c for c in run["conditions"] if c["severity"] == "critical"]


TEST_ONLY = {"mmengine_test_rtmdet_coco_v0.7.3"}  # a tools/test.py session alone: no training to read


def test_every_real_run_is_in_the_table():
    assert sorted(t.run for t in TRUTHS) == sorted(p.name for p in REAL.iterdir() if p.is_dir() and p.name not in TEST_ONLY)


@pytest.mark.parametrize(("run", "ratio"), [
    ("mmengine_epoch_mmpose_rtmpose_ear", 0.963095),  # MMPose's `acc_pose: 0.963095` is already a 0-1 ratio
    ("mmengine_iter_mmseg_watermelon", 0.957609),  # MMSeg's `decode.acc_seg: 95.7609` is a percentage
    ("mmengine_iter_mmseg_10k_building", None),  # read below from its own last train line
])
def test_the_training_accuracy_is_read_in_its_own_scale(run, ratio, status_runs):
    """A 0-1 accuracy read as a percentage would show MMPose's 96% as 1.0% (and page a yellow 'accuracy low')."""
    if ratio is None:
        log = next((REAL / run).glob("*.log")).read_text(encoding="utf-8")
        last = [line for line in log.splitlines() if "Iter(train)" in line][-1]
        ratio = float(last.split("decode.acc_seg: ")[1].split()[0]) / 100
    assert status_runs[run]["accuracy_ratio"] == pytest.approx(ratio)
