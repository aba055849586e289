"""`trainwarden demo`: replay a realistic MMEngine run, modelled on the user's (docs/guide.md), into a
temporary folder at high speed, and watch it with the guide profile (`policy.profile: guide`).

The run: `configs/llvip/stage2_1_kaist_detonly_pure_detection.py`, Faster R-CNN-style detector on KAIST, 11439
iterations per epoch, batch size 4, 5 epochs, logged every 50 iterations, Pascal VOC validation every epoch, with
one incident in epoch 3 (the loss explodes above 1.0 for a few logged steps, then recovers). The lines have
MMEngine's exact shapes; the timestamps, `time` and `eta` are the replay's own (it runs fast).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

CONFIG_NAME = "stage2_1_kaist_detonly_pure_detection"
RUN_NAME = "stage2_1_pure_detection"
MAP_BY_EPOCH = (0.6012, 0.6105, 0.6188, 0.6297, 0.6341)

CONFIG_DUMP = """default_scope = 'mmdet'
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, save_best='pascal_voc/mAP', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=4e-05, weight_decay=0.05),
    clip_grad=dict(max_norm=3.0, norm_type=2))
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=True, begin=0, end=5)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs={max_epochs}, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    dataset=dict(type='KAISTDataset', data_root='data/kaist/', ann_file='train.json'))
val_evaluator = dict(type='VOCMetric', metric='mAP', eval_mode='11points')
load_from = 'work_dirs/stage1_llvip/best_pascal_voc_mAP_epoch_21.pth'
resume = False
work_dir = './work_dirs/{run}'
"""


def _stamp(ts: float) -> str:
    return time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(ts))


def _eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    day = f"{days} day{'s' if days != 1 else ''}, " if days else ""
    return f"{day}{h}:{m:02d}:{s:02d}"


@dataclass
class DemoPlan:
    max_epochs: int = 5
    iterations_per_epoch: int = 11439
    log_interval: int = 50
    val_iterations: int = 2252
    val_log_interval: int = 50
    seed: int = 7

    @property
    def train_lines(self) -> int:
        return self.max_epochs * math.ceil(self.iterations_per_epoch / self.log_interval)

    @property
    def total_lines(self) -> int:
        per_val = math.ceil(self.val_iterations / self.val_log_interval) + 4
        return self.train_lines + self.max_epochs * per_val + 10


class DemoWriter:
    """Writes the run line by line; `clock` gives each line's time and `pace` the seconds between lines (the
    replay's own speed, which also sets the logged `time` and `eta`)."""

    def __init__(self, root: Path, plan: DemoPlan, clock: Callable[[], float] = time.time, pace: float = 0.04):
        self.plan = plan
        self.clock = clock
        self.pace = pace
        self.work_dir = Path(root) / RUN_NAME
        self.session = time.strftime("%Y%m%d_%H%M%S", time.localtime(clock()))
        self.session_dir = self.work_dir / self.session
        self.log_path = self.session_dir / f"{self.session}.log"
        self.scalars_path = self.session_dir / "vis_data" / "scalars.json"
        self.rng = random.Random(plan.seed)

    def _write(self, fh, message: str, level: str = "INFO") -> None:
        fh.write(f"{_stamp(self.clock())} - mmengine - {level} - {message}\n")
        fh.flush()

    def lines(self) -> Iterator[tuple[str, Callable]]:
        """Steps of the replay: (what happened, a function that writes it). The caller paces them."""
        p = self.plan
        self.session_dir.mkdir(parents=True, exist_ok=True)
        self.scalars_path.parent.mkdir(parents=True, exist_ok=True)
        (self.work_dir / f"{CONFIG_NAME}.py").write_text(
            CONFIG_DUMP.format(max_epochs=p.max_epochs, run=RUN_NAME), encoding="utf-8"
        )
        log = self.log_path.open("a", encoding="utf-8", newline="\n")
        scalars = self.scalars_path.open("a", encoding="utf-8", newline="\n")
        try:
            yield "start", lambda: self._header(log)
            best: tuple[Path, float] | None = None
            for epoch in range(1, p.max_epochs + 1):
                for it in range(p.log_interval, p.iterations_per_epoch + p.log_interval, p.log_interval):
                    it = min(it, p.iterations_per_epoch)
                    yield "train", lambda e=epoch, i=it: self._train(log, scalars, e, i)
                yield "checkpoint", lambda e=epoch: self._checkpoint(log, e)
                for vi in range(p.val_log_interval, p.val_iterations, p.val_log_interval):
                    yield "val", lambda e=epoch, i=vi: self._val_progress(log, e, i)
                best_box = [best]
                yield "evaluation", lambda e=epoch, b=best_box: self._evaluate(log, scalars, e, b)
                best = best_box[0]
        finally:
            log.close()
            scalars.close()

    def _header(self, log) -> None:
        self._write(log, "\n------------------------------------------------------------\nSystem environment:\n"
                    "    sys.platform: win32\n    Python: 3.10.13\n    CUDA available: True\n"
                    "    GPU 0: NVIDIA GeForce RTX 4090\n    PyTorch: 2.1.2+cu121\n    MMEngine: 0.10.3\n"
                    "------------------------------------------------------------\n")
        self._write(log, "Config:\n" + CONFIG_DUMP.format(max_epochs=self.plan.max_epochs, run=RUN_NAME).rstrip())
        self._write(log, f"Checkpoints will be saved to {self.work_dir}.")

    def loss_at(self, epoch: int, it: int) -> float:
        p = self.plan
        t = ((epoch - 1) * p.iterations_per_epoch + it) / (p.max_epochs * p.iterations_per_epoch)
        if epoch == min(3, p.max_epochs) and 0.45 <= it / p.iterations_per_epoch < 0.47:
            return 1.2 + self.rng.uniform(0, 0.2)  # the incident the demo shows: a short loss explosion (red)
        return 0.27 + 0.07 * math.exp(-3.0 * t) + self.rng.uniform(-0.008, 0.008)

    def _train(self, log, scalars, epoch: int, it: int) -> None:
        p = self.plan
        loss = self.loss_at(epoch, it)
        # components inside the guide's healthy ranges (loss_cls 0.10-0.15, loss_bbox 0.15-0.20) while the total is
        cls, bbox = 0.10 + (loss - 0.26) * 0.3, 0.15 + (loss - 0.26) * 0.5
        rpn_cls = (loss - cls - bbox) * 0.55
        rpn_bbox = loss - cls - bbox - rpn_cls
        acc = 96.0 + self.rng.uniform(-1.2, 1.2)
        grad = 6.0 + self.rng.uniform(-1.5, 1.5)
        per_iter = self.pace / p.log_interval
        remaining = (p.max_epochs - epoch) * p.iterations_per_epoch + (p.iterations_per_epoch - it)
        width = len(str(p.max_epochs))
        iw = len(str(p.iterations_per_epoch))
        self._write(
            log,
            f"Epoch(train) {' ' * (width - len(str(epoch)))}[{epoch}][{it:>{iw}}/{p.iterations_per_epoch}]  "
            f"base_lr: 4.0000e-05 lr: 4.0000e-05  eta: {_eta(remaining * per_iter)}  time: {per_iter:.4f}  "
            f"data_time: {per_iter * 0.03:.4f}  memory: 5432  grad_norm: {grad:.4f}  loss: {loss:.4f}  "
            f"loss_rpn_cls: {rpn_cls:.4f}  loss_rpn_bbox: {rpn_bbox:.4f}  loss_cls: {cls:.4f}  acc: {acc:.4f}  "
            f"loss_bbox: {bbox:.4f}",
        )
        step = (epoch - 1) * p.iterations_per_epoch + it
        row = {"base_lr": 4e-05, "lr": 4e-05, "data_time": per_iter * 0.03, "grad_norm": grad, "loss": loss,
               "loss_rpn_cls": rpn_cls, "loss_rpn_bbox": rpn_bbox, "loss_cls": cls, "acc": acc, "loss_bbox": bbox,
               "time": per_iter, "epoch": epoch, "iter": step, "memory": 5432, "step": step}
        scalars.write(json.dumps(row) + "\n")
        scalars.flush()

    def _checkpoint(self, log, epoch: int) -> None:
        self._write(log, f"Exp name: {CONFIG_NAME}_{self.session}")
        self._write(log, f"Saving checkpoint at {epoch} epochs")
        ckpt = self.work_dir / f"epoch_{epoch}.pth"
        ckpt.write_bytes(b"trainwarden demo checkpoint (not a real model)\n")
        (self.work_dir / "last_checkpoint").write_text(str(ckpt), encoding="utf-8")

    def _val_progress(self, log, epoch: int, it: int) -> None:
        p = self.plan
        iw = len(str(p.val_iterations))
        self._write(
            log,
            f"Epoch(val)  [{epoch}][{it:>{iw}}/{p.val_iterations}]    eta: {_eta((p.val_iterations - it) * 0.001)}  "
            f"time: 0.0010  data_time: 0.0002  memory: 1207",
        )

    def _evaluate(self, log, scalars, epoch: int, best_box: list) -> None:
        p = self.plan
        m = MAP_BY_EPOCH[(epoch - 1) % len(MAP_BY_EPOCH)]
        recall = min(0.99, m + 0.18)
        self._write(
            log,
            f"Epoch(val) [{epoch}][{p.val_iterations}/{p.val_iterations}]    pascal_voc/mAP: {m:.4f}  "
            f"pascal_voc/AP50: {m:.4f}  pascal_voc/recall@100: {recall:.4f}  data_time: 0.0002  time: 0.0010",
        )
        scalars.write(json.dumps({"pascal_voc/mAP": m, "pascal_voc/AP50": m, "data_time": 0.0002, "time": 0.001,
                                  "step": epoch}) + "\n")
        scalars.flush()
        previous = best_box[0]  # (path, value) of the best checkpoint so far
        if previous is None or m > previous[1]:
            if previous is not None and previous[0].exists():
                previous[0].unlink()
                self._write(log, f"The previous best checkpoint {previous[0]} is removed")
            best = self.work_dir / f"best_pascal_voc_mAP_epoch_{epoch}.pth"
            best.write_bytes(b"trainwarden demo checkpoint (not a real model)\n")
            self._write(log, f"The best checkpoint with {m:.4f} pascal_voc/mAP at {epoch} epoch is saved to {best.name}.")
            best_box[0] = (best, m)


def replay(writer: DemoWriter, pace: float, on_step: Callable[[str], None] | None = None,
           stop: Callable[[], bool] = lambda: False) -> None:
    """Write every step, `pace` seconds apart."""
    for kind, write in writer.lines():
        if stop():
            return
        write()
        if on_step is not None:
            on_step(kind)
        if pace > 0 and kind != "start":
            time.sleep(pace)
