"""Table-driven tests of the pure line parsers.

Lines marked `real:` are copied byte for byte from tests/fixtures/real-logs (file named); lines marked `design:`
are the shapes docs/formats.md quotes from MMEngine's and mmcv's sources. Expected values checked by hand.
"""

from __future__ import annotations

import math
import time

import pytest

from trainwarden.model import (
    BestCheckpointRemoved,
    BestCheckpointSaved,
    CheckpointDir,
    CheckpointLoaded,
    CheckpointSaved,
    EarlyStopCheck,
    EarlyStopTriggered,
    ErrorLine,
    EvalProgress,
    EvalRecord,
    Resumed,
    TrainRecord,
)
from trainwarden.parse.configdump import parse_config_dump
from trainwarden.parse.console import parse_console_line
from trainwarden.parse.jsonlogs import parse_mmcv_json_line, parse_scalars_line, parse_test_dump
from trainwarden.parse.messages import eta_seconds, parse_message
from trainwarden.parse.prefix import clean_line, split_header
from trainwarden.parse.stream import parse_lines

HEADERS = [
    # real: mmengine_epoch_rtmdet_coco_v0.7.3/20230611_194513/20230611_194513.log
    ("2023/06/11 19:47:26 - mmengine - INFO - Epoch(train)   [1][4/4]  lr: 2.0691e-04",
     ("mmengine", "mmengine", "INFO", "Epoch(train)   [1][4/4]  lr: 2.0691e-04", (2023, 6, 11, 19, 47, 26))),
    # real: mmdet2x_retinanet_voc/20230208_061338.log
    ("2023-02-08 06:15:07,080 - mmdet - INFO - Saving checkpoint at 1 epochs",
     ("mmcv", "mmdet", "INFO", "Saving checkpoint at 1 epochs", (2023, 2, 8, 6, 15, 7.08))),
    # design: console capture, no year
    ("06/11 19:47:26 - mmengine - WARNING - something", ("console", "mmengine", "WARNING", "something",
                                                          (2024, 6, 11, 19, 47, 26))),
    # design: MMEngine ERROR lines carry the source location first
    ("2023/06/11 19:45:14 - mmengine - ERROR - /x/hooks/checkloss_hook.py - after_train_iter - 39 - loss become "
     "infinite or NaN!", ("mmengine", "mmengine", "ERROR", "loss become infinite or NaN!", (2023, 6, 11, 19, 45, 14))),
]


@pytest.mark.parametrize(("line", "expected"), HEADERS)
def test_header(line, expected):
    dialect, logger, level, message, (y, mo, d, h, mi, s) = expected
    header = split_header(line, default_year=2024)
    assert (header.dialect, header.logger, header.level, header.message) == (dialect, logger, level, message)
    local = time.mktime((y, mo, d, h, mi, int(s), 0, 0, -1)) + (s - int(s))
    assert header.ts == pytest.approx(local)


def test_continuation_lines_have_no_header():
    assert split_header("    batch_size=4,", 2024) is None
    assert split_header("+-------------+------+--------+", 2024) is None


def test_clean_line_strips_colour_crlf_and_progress_redraws():
    assert clean_line("\x1b[32m06/11 19:47:26\x1b[0m - mmengine - \x1b[37mINFO\x1b[0m - x\r\n") == (
        "06/11 19:47:26 - mmengine - INFO - x"
    )
    assert clean_line("  5%|#   | 10/200\r 10%|##  | 20/200\r") == " 10%|##  | 20/200"


TRAIN = [
    # design: MMEngine with base_lr, grad_norm and a two-day eta
    ("Epoch(train)  [1][  50/11439]  base_lr: 4.0000e-05 lr: 4.0000e-05  eta: 2 days, 7:32:05  time: 0.4567  "
     "data_time: 0.0123  memory: 5432  grad_norm: 7.1234  loss: 0.2607  loss_rpn_cls: 0.0123  loss_rpn_bbox: 0.0101  "
     "loss_cls: 0.1000  acc: 96.8750  loss_bbox: 0.1600",
     dict(epoch=1, epoch_iteration=50, iterations_per_epoch=11439, iteration=None, eta=2 * 86400 + 7 * 3600 + 32 * 60 + 5,
          values={"base_lr": 4e-05, "lr": 4e-05, "time": 0.4567, "data_time": 0.0123, "memory": 5432.0,
                  "grad_norm": 7.1234, "loss": 0.2607, "loss_rpn_cls": 0.0123, "loss_rpn_bbox": 0.0101,
                  "loss_cls": 0.1, "acc": 96.875, "loss_bbox": 0.16})),
    # real: mmengine_epoch_rtmdet_coco_v0.7.3 (padded epoch)
    ("Epoch(train)   [1][4/4]  lr: 2.0691e-04  eta: 6:58:51  time: 31.5719  data_time: 30.5978  memory: 7957  "
     "loss: 0.1694  loss_cls: 0.1694  loss_bbox: 0.0000",
     dict(epoch=1, epoch_iteration=4, iterations_per_epoch=4, iteration=None, eta=6 * 3600 + 58 * 60 + 51,
          values={"lr": 2.0691e-04, "time": 31.5719, "data_time": 30.5978, "memory": 7957.0, "loss": 0.1694,
                  "loss_cls": 0.1694, "loss_bbox": 0.0})),
    # real: mmengine_iter_mmseg_v0.7.3 (iteration-based, dotted keys)
    ("Iter(train) [ 100/3000]  lr: 9.9779e-03  eta: 0:10:04  time: 0.1358  data_time: 0.0037  memory: 3774  "
     "loss: 0.0769  decode.loss_ce: 0.0534  decode.acc_seg: 78.6743  aux.loss_ce: 0.0236  aux.acc_seg: 75.6897",
     dict(epoch=None, epoch_iteration=None, iterations_per_epoch=None, iteration=100, eta=604,
          values={"lr": 9.9779e-03, "time": 0.1358, "data_time": 0.0037, "memory": 3774.0, "loss": 0.0769,
                  "decode.loss_ce": 0.0534, "decode.acc_seg": 78.6743, "aux.loss_ce": 0.0236, "aux.acc_seg": 75.6897})),
    # real: mmdet2x_retinanet_voc (tab and comma separated)
    ("Epoch [1][50/4139]\tlr: 1.082e-03, eta: 9:13:28, time: 1.609, data_time: 0.057, memory: 19914, "
     "loss_cls: 1.1122, loss_bbox: 0.2325, loss: 1.3447",
     dict(epoch=1, epoch_iteration=50, iterations_per_epoch=4139, iteration=None, eta=9 * 3600 + 13 * 60 + 28,
          values={"lr": 1.082e-03, "time": 1.609, "data_time": 0.057, "memory": 19914.0, "loss_cls": 1.1122,
                  "loss_bbox": 0.2325, "loss": 1.3447})),
    # design: mmcv with a one-day eta (its comma must not split the items) and param-group learning rates
    ("Epoch [3][100/500]\tlr_backbone: 1.000e-04, lr_head: 1.000e-03, eta: 1 day, 2:03:04, time: 0.500, "
     "data_time: 0.010, memory: 9000, loss: 0.5000",
     dict(epoch=3, epoch_iteration=100, iterations_per_epoch=500, iteration=None, eta=86400 + 2 * 3600 + 184,
          values={"lr_backbone": 1e-04, "lr_head": 1e-03, "time": 0.5, "data_time": 0.01, "memory": 9000.0,
                  "loss": 0.5})),
    # design: mmcv iteration-based
    ("Iter [200/4000]\tlr: 1.000e-02, eta: 0:10:00, time: 0.150, data_time: 0.010, memory: 3000, loss: 0.9000",
     dict(epoch=None, epoch_iteration=None, iterations_per_epoch=None, iteration=200, eta=600,
          values={"lr": 0.01, "time": 0.15, "data_time": 0.01, "memory": 3000.0, "loss": 0.9})),
]


@pytest.mark.parametrize(("message", "expected"), TRAIN)
def test_train_lines(message, expected):
    rec = parse_message(message, 1.0)
    assert isinstance(rec, TrainRecord)
    assert (rec.epoch, rec.epoch_iteration, rec.iterations_per_epoch, rec.iteration) == (
        expected["epoch"], expected["epoch_iteration"], expected["iterations_per_epoch"], expected["iteration"]
    )
    assert rec.eta_seconds == expected["eta"]
    assert rec.values == pytest.approx(expected["values"])


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_nonfinite_values_are_kept(text):
    rec = parse_message(f"Epoch(train)  [2][100/200]  lr: 1.0000e-04  eta: 0:01:00  time: 0.1  loss: {text}  "
                        f"loss_cls: {text}", 1.0)
    assert not math.isfinite(rec.values["loss"]) and not math.isfinite(rec.values["loss_cls"])
    assert (text.startswith("-")) == (rec.values["loss"] < 0) or math.isnan(rec.values["loss"])


EVALS = [
    # real: mmengine_epoch_rtmdet_coco_v0.7.3
    ("Epoch(val) [10][2/2]    coco/bbox_mAP: 0.0010  coco/bbox_mAP_50: 0.0080  coco/bbox_mAP_75: 0.0010  "
     "coco/bbox_mAP_s: -1.0000  coco/bbox_mAP_m: -1.0000  coco/bbox_mAP_l: 0.0010  data_time: 5.5907  time: 5.9640",
     ("val", 10, {"coco/bbox_mAP": 0.001, "coco/bbox_mAP_50": 0.008, "coco/bbox_mAP_75": 0.001,
                  "coco/bbox_mAP_s": -1.0, "coco/bbox_mAP_m": -1.0, "coco/bbox_mAP_l": 0.001})),
    # design: Pascal VOC with recall
    ("Epoch(val) [1][2252/2252]    pascal_voc/mAP: 0.6012  pascal_voc/AP50: 0.6010  pascal_voc/recall@100: 0.8123  "
     "data_time: 0.0020  time: 0.0921",
     ("val", 1, {"pascal_voc/mAP": 0.6012, "pascal_voc/AP50": 0.601, "pascal_voc/recall@100": 0.8123})),
    # real: mmengine_iter_mmseg_v0.7.3 (the iteration comes from the lines before)
    ("Iter(val) [17/17]    aAcc: 65.8500  mIoU: 24.5900  mAcc: 31.3300  data_time: 0.0280  time: 0.8304",
     ("val", None, {"aAcc": 65.85, "mIoU": 24.59, "mAcc": 31.33})),
    # real: mmengine_test_rtmdet_coco_v0.7.3
    ("Epoch(test) [2/2]    coco/bbox_mAP: 0.0030  coco/bbox_mAP_50: 0.0050  coco/bbox_mAP_75: 0.0020  "
     "coco/bbox_mAP_s: 0.0000  coco/bbox_mAP_m: 0.0030  coco/bbox_mAP_l: 0.0040  data_time: 1.4108  time: 2.5377",
     ("test", None, {"coco/bbox_mAP": 0.003, "coco/bbox_mAP_50": 0.005, "coco/bbox_mAP_75": 0.002,
                     "coco/bbox_mAP_s": 0.0, "coco/bbox_mAP_m": 0.003, "coco/bbox_mAP_l": 0.004})),
    # real: mmdet2x_retinanet_voc
    ("Epoch(val) [1][2476]\tmAP: 0.8411, AP50: 0.8410", ("val", 1, {"mAP": 0.8411, "AP50": 0.841})),
    # real: mmdet2x_maskrcnn_coco_balloon (copypaste strings are not metrics)
    ("Epoch(val) [1][13]\tbbox_mAP: 0.0910, bbox_mAP_copypaste: 0.0910 0.1390 0.0970 0.0030 0.1270 0.1280, "
     "segm_mAP: 0.1100", ("val", 1, {"bbox_mAP": 0.091, "segm_mAP": 0.11})),
]


@pytest.mark.parametrize(("message", "expected"), EVALS)
def test_evaluation_lines(message, expected):
    mode, epoch, metrics = expected
    rec = parse_message(message, 5.0)
    assert isinstance(rec, EvalRecord)
    assert (rec.mode, rec.epoch) == (mode, epoch)
    assert rec.metrics == pytest.approx(metrics)


def test_validation_progress_line_is_progress_not_metrics():
    rec = parse_message("Epoch(val)  [1][  50/2252]    eta: 0:03:27  time: 0.0923  data_time: 0.0019  memory: 1207", 3.0)
    assert rec == EvalProgress(3.0, "val")


OTHER = [
    ("Saving checkpoint at 5 epochs", CheckpointSaved(1.0, "epoch", 5)),
    ("Saving checkpoint at 1500 iterations", CheckpointSaved(1.0, "iteration", 1500)),
    ("The best checkpoint with 0.4930 coco/bbox_mAP at 10 epoch is saved to best_coco_bbox_mAP_epoch_10.pth.",
     BestCheckpointSaved(1.0, "coco/bbox_mAP", 0.493, "epoch", 10, "best_coco_bbox_mAP_epoch_10.pth")),
    ("The best checkpoint with 65.8500 aAcc at 400 iter is saved to best_aAcc_iter_400.pth.",
     BestCheckpointSaved(1.0, "aAcc", 65.85, "iteration", 400, "best_aAcc_iter_400.pth")),
    ("The best checkpoint with 0.4930 coco/bbox_mAP at 10 epoch is saved to best_coco/bbox_mAP_epoch_10.pth.",
     BestCheckpointSaved(1.0, "coco/bbox_mAP", 0.493, "epoch", 10, "best_coco/bbox_mAP_epoch_10.pth")),
    ("The previous best checkpoint /data/w/best_aAcc_iter_400.pth is removed",
     BestCheckpointRemoved(1.0, "/data/w/best_aAcc_iter_400.pth")),
    ("The previous best checkpoint /w/best_mAP_epoch_2.pth was removed", BestCheckpointRemoved(1.0, "/w/best_mAP_epoch_2.pth")),
    ("Now best checkpoint is saved as best_mAP_epoch_3.pth.", BestCheckpointSaved(1.0, None, None, None, None,
                                                                                   "best_mAP_epoch_3.pth")),
    ("Best mAP is 0.8500 at 3 epoch.", BestCheckpointSaved(1.0, "mAP", 0.85, "epoch", 3, None)),
    ("Auto resumed from the latest checkpoint /w/epoch_2.pth.", CheckpointLoaded(1.0, "/w/epoch_2.pth", True)),
    ("Load checkpoint from ./logs/best_coco_bbox_mAP_epoch_90.pth",
     CheckpointLoaded(1.0, "./logs/best_coco_bbox_mAP_epoch_90.pth")),
    ("resumed epoch: 2, iter: 22878", Resumed(1.0, 2, 22878)),
    ("resumed epoch 4, iter 16556", Resumed(1.0, 4, 16556)),
    ("Checkpoints will be saved to /mnt/data/logs_drink.", CheckpointDir(1.0, "/mnt/data/logs_drink")),
    ("Checkpoints will be saved to /media/effnet_voc by HardDiskBackend.", CheckpointDir(1.0, "/media/effnet_voc")),
    ("Epoch 2: mAP=0.5884 (Reset counter)", EarlyStopCheck(1.0, 2, "mAP", 0.5884, None, 0, None, False)),
    ("Epoch 3: mAP=0.5542 (<0.58, 1/2)", EarlyStopCheck(1.0, 3, "mAP", 0.5542, 0.58, 1, 2, False)),
    ("Epoch 4: mAP=0.5276 (<0.58, 2/2 → trigger)", EarlyStopCheck(1.0, 4, "mAP", 0.5276, 0.58, 2, 2, True)),
    # the arrow garbled by a GBK console: a full counter still means triggered
    ("Epoch 4: mAP=0.5276 (<0.58, 2/2 鈫?trigger)", EarlyStopCheck(1.0, 4, "mAP", 0.5276, 0.58, 2, 2, True)),
    ("the monitored metric did not improve in the last 5 records. best score: 0.857. ",
     EarlyStopTriggered(1.0, "no_improvement", None, 0.857,
                        "the monitored metric did not improve in the last 5 records. best score: 0.857.")),
    ("Stopping threshold reached: `coco/bbox_mAP` = 0.51 is greater than 0.5.",
     EarlyStopTriggered(1.0, "threshold", "coco/bbox_mAP", 0.51,
                        "Stopping threshold reached: `coco/bbox_mAP` = 0.51 is greater than 0.5.")),
    ("loss become infinite or NaN!", ErrorLine(1.0, "nonfinite_loss", "loss become infinite or NaN!")),
    ("Exp name: drink_RTMDet_20230611_194513", None),
    ("paramwise_options -- backbone.stem.0.bn.weight:weight_decay=0.0", None),
]


@pytest.mark.parametrize(("message", "expected"), OTHER)
def test_other_messages(message, expected):
    assert parse_message(message, 1.0) == expected


def test_monitored_metric_infinite():
    rec = parse_message("Monitored metric coco/bbox_mAP = nan is infinite. Previous best value was 0.400.", 1.0)
    assert isinstance(rec, EarlyStopTriggered) and rec.reason == "nonfinite" and rec.key == "coco/bbox_mAP"
    assert math.isnan(rec.value)


CONSOLE = [
    ("RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 23.69 GiB total capacity)", "cuda_oom"),
    ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB", "cuda_oom"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "cuda_oom"),
    ("THCudaCheck FAIL file=/pytorch/aten/src/THC/THCGeneral.cpp line=383 error=2 : out of memory", "cuda_oom"),
    ("RuntimeError: cuda runtime error (2) : out of memory at /pytorch/aten/src/THC/THCCachingAllocator.cpp:510",
     "cuda_oom"),
    ("Traceback (most recent call last):", "traceback"),
    ("RuntimeError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1269, unhandled system error",
     "nccl"),
    ("[E ProcessGroupNCCL.cpp:828] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1)", "nccl"),
    ("RuntimeError: CUDA error: an illegal memory access was encountered", "cuda_error"),
    ("RuntimeError: DataLoader worker (pid 4242) is killed by signal: Killed.", "host_oom"),
    ("MemoryError", "host_oom"),
    # the environment dump at the top of every log must not look like an error
    ("  - Build settings: BLAS_INFO=mkl, USE_NCCL=ON, USE_NNPACK=ON, USE_OPENMP=ON, USE_ROCM=OFF,", None),
    ("    dist_cfg: {'backend': 'nccl'}", None),
    ("    CUDA available: True", None),
]


@pytest.mark.parametrize(("line", "kind"), CONSOLE)
def test_console_errors(line, kind):
    rec = parse_console_line(line)
    assert (rec.kind if rec else None) == kind


def test_eta_shapes():
    assert eta_seconds("0:00:00") == 0
    assert eta_seconds("1 day, 2:03:04") == 86400 + 7384
    assert eta_seconds("2 days, 7:32:05") == 2 * 86400 + 27125
    assert eta_seconds("soon") is None


def test_config_dump_mmengine_and_mmcv():
    # real: the train_cfg / train_dataloader parts of mmengine_iter_mmseg_v0.7.3 and mmdet2x_retinanet_voc
    facts = parse_config_dump(
        "train_cfg = dict(type='IterBasedTrainLoop', max_iters=3000, val_interval=400)\n"
        "train_dataloader = dict(batch_size=8, num_workers=4)\n"
    )
    assert (facts.loop, facts.max_iterations, facts.val_interval, facts.batch_size) == ("iteration", 3000, 400, 8)
    facts = parse_config_dump(
        "data = dict(samples_per_gpu=4, workers_per_gpu=2)\nevaluation = dict(interval=1, metric='mAP')\n"
        "runner = dict(type='EpochBasedRunner', max_epochs=5)\n"
    )
    assert (facts.loop, facts.max_epochs, facts.val_interval, facts.batch_size) == ("epoch", 5, 1, 4)


def test_config_dump_is_never_executed_and_survives_garbage():
    facts = parse_config_dump("import os\nos.system('touch /tmp/pwned')\ntrain_cfg = dict(max_epochs=__import__('os'))")
    assert facts.max_epochs is None
    facts = parse_config_dump("train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1\n  (cut")
    assert (facts.loop, facts.max_epochs, facts.val_interval) == ("epoch", 12, 1)  # regex fallback


def test_config_dump_early_stopping_hook():
    facts = parse_config_dump(
        "custom_hooks = [dict(type='EarlyStoppingHook', monitor='coco/bbox_mAP', patience=5, min_delta=0.1)]"
    )
    assert facts.early_stopping == {"monitor": "coco/bbox_mAP", "patience": 5, "min_delta": 0.1}


def test_stream_groups_config_and_environment_blocks():
    lines = [
        "2023/06/11 19:45:14 - mmengine - INFO - ",
        "------------------------------------------------------------",
        "    MMEngine: 0.7.3",
        "2023/06/11 19:45:15 - mmengine - INFO - Config:",
        "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=200, val_interval=10)",
        "2023/06/11 19:45:17 - mmengine - INFO - Saving checkpoint at 5 epochs",
    ]
    records = parse_lines(lines, 2023)
    assert [type(r).__name__ for r in records] == ["ConfigFacts", "ConfigFacts", "CheckpointSaved"]
    assert records[0].versions == {"MMEngine": "0.7.3"}
    assert records[1].max_epochs == 200


def test_json_rows():
    # real: first rows of mmengine_epoch_rtmdet_coco_v0.7.3/.../scalars.json
    train = parse_scalars_line('{"lr": 0.00020691448275862075, "data_time": 30.59779441356659, "loss": 0.16941098682582378, '
                               '"loss_cls": 0.16941098682582378, "loss_bbox": 0.0, "time": 31.571909606456757, "epoch": 1, '
                               '"memory": 7957, "step": 4}')
    assert isinstance(train, TrainRecord) and (train.epoch, train.iteration) == (1, 4)
    assert train.values["loss"] == pytest.approx(0.16941098682582378)
    val = parse_scalars_line('{"coco/bbox_mAP": 0.001, "coco/bbox_mAP_50": 0.008, "data_time": 5.59, "time": 5.96, '
                             '"step": 10}', by_epoch=True)
    assert isinstance(val, EvalRecord) and (val.mode, val.epoch) == ("val", 10)
    assert set(val.metrics) == {"coco/bbox_mAP", "coco/bbox_mAP_50"}
    # real: mmdet2x_retinanet_voc/20230208_061338.log.json
    row = parse_mmcv_json_line('{"mode": "val", "epoch": 1, "iter": 2476, "lr": 0.002, "mAP": 0.8411, "AP50": 0.841}')
    assert isinstance(row, EvalRecord) and (row.epoch, row.metrics) == (1, {"mAP": 0.8411, "AP50": 0.841})
    row = parse_mmcv_json_line('{"mode": "train", "epoch": 1, "iter": 50, "lr": 0.00108, "loss": 1.34472}')
    assert isinstance(row, TrainRecord) and (row.epoch, row.epoch_iteration, row.values["loss"]) == (1, 50, 1.34472)
    assert parse_mmcv_json_line("{not json") is None
    dump = parse_test_dump('{"coco/bbox_mAP": 0.003, "data_time": 1.41, "time": 2.53}')
    assert dump.mode == "test" and dump.metrics == {"coco/bbox_mAP": 0.003}


def test_clock_offset_between_the_trainer_and_us():
    from trainwarden.parse.prefix import clock_offset

    now = 1_800_000_000.0
    assert clock_offset(now + 8 * 3600 - 40, now - 30, now) == -8 * 3600  # a UTC container reading UTC+8 logs
    assert clock_offset(now + 5.5 * 3600 - 20, now - 10, now) == -5.5 * 3600  # half-hour zones
    assert clock_offset(now - 200, now - 10, now) == 0  # same zone, a quiet minute
    assert clock_offset(now - 8 * 3600, now - 10, now) == 0  # old lines may just be old (a copied log)
    assert clock_offset(now + 400 * 86400, now - 10, now) == 0  # far beyond any zone: not a zone
    header = split_header("2023/06/11 19:47:26 - mmengine - INFO - x", 2023, offset=3600)
    assert header.ts == split_header("2023/06/11 19:47:26 - mmengine - INFO - x", 2023).ts + 3600


# -- MMSeg 0.x (mmcv IterBasedRunner): an evaluation written as a train line (issue 12, finding 11) ------------
# The shape issue 12 quotes from a 160000-iteration MMSeg 0.x run (no public copy of such a log was found: the
# model zoo's .log.json files are not on GitHub): the iteration in it (500, the validation images) is not the run's.
MMSEG0_EVAL_TEXT = "Iter [500/160000]\tlr: 9.969e-03, aAcc: 0.7926, mIoU: 0.4183, mAcc: 0.5221, IoU.road: 0.9512"
MMSEG0_EVAL_JSON = ('{"mode": "train", "epoch": 1, "iter": 500, "lr": 0.00997, "aAcc": 0.7926, "mIoU": 0.4183, '
                    '"mAcc": 0.5221, "IoU.road": 0.9512}')


def test_an_mmseg0_evaluation_in_a_train_line_is_an_evaluation():
    rec = parse_message(MMSEG0_EVAL_TEXT, 1.0)
    assert rec == EvalRecord(1.0, "val", None, None, {"aAcc": 0.7926, "mIoU": 0.4183, "mAcc": 0.5221, "IoU.road": 0.9512})
    assert parse_mmcv_json_line(MMSEG0_EVAL_JSON) == EvalRecord(
        None, "val", None, None, {"aAcc": 0.7926, "mIoU": 0.4183, "mAcc": 0.5221, "IoU.road": 0.9512})


@pytest.mark.parametrize("message", [
    # real: mmdet2x_retinanet_voc/20230208_061338.log (a loss: a train line whatever else it holds)
    "Epoch [1][50/4139]\tlr: 1.082e-03, eta: 9:13:28, time: 1.609, data_time: 0.057, memory: 19914, "
    "loss_cls: 1.1122, loss_bbox: 0.2325, loss: 1.3447",
    # a train line of a public MMSeg 0.11 / mmcv 1.5 log (`work_dirs/bisa_baseline`), found with the code search
    "Iter [50/320000]\tlr: 9.799e-07, eta: 1 day, 12:18:25, time: 0.409, data_time: 0.011, memory: 35360, "
    "decode.loss_seg: 4.0467, decode.acc_seg: 0.4610, aux.loss_seg: 1.6049, aux.acc_seg: 0.4820, loss: 5.6517",
    # no loss and no metric: still a train step (only progress keys)
    "Iter [100/3000]\tlr: 1.0e-02, eta: 0:10:00, time: 0.2, data_time: 0.01",
])
def test_train_lines_with_a_loss_or_without_metrics_stay_train_lines(message):
    assert isinstance(parse_message(message, 1.0), TrainRecord)
