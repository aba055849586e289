"""A real MMEngine 0.10 training on CPU whose losses and metrics follow a script, for trainwarden's live checks.

Everything MMEngine does is real (Runner, train/val loops, LoggerHook, CheckpointHook, EarlyStoppingHook, resume,
the log, vis_data/scalars.json, the config dump); only the numbers are scripted: the model's forward returns the
loss the scenario names for the current iteration, and the metric returns the scenario's mAP for the epoch just
trained. A scenario may also end the training the way real ones end: a CUDA out-of-memory error, a crash.

    python tests/trainings/scripted.py --work-dir WORK_DIR --scenario healthy [--build cfg|python] [--resume]
        [--step-seconds S] [--max-epochs N]

Each training iteration sleeps `--step-seconds` (0.2 s by default), so that an epoch takes 2 s as real ones take
minutes: MMEngine's `eta` then says something. An epoch of under a second or so logs `eta: 0:00:00` on every
line, and a log of unstated length cannot tell its end from that (judge/lifecycle.py, `last_epoch_by_eta`).

`--build cfg` is `Runner.from_cfg(Config.fromfile(scripted_config.py))` (the log holds the config and the config
is dumped into the work dir); `--build python` is `Runner(model=..., train_cfg=dict(by_epoch=True, ...), ...)` as
MMEngine's tutorial writes it (no config in the log, no dump).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

# MMEngine 0.10.7 resumes with torch.load, whose default became weights_only=True in PyTorch 2.6: its own
# checkpoints (a HistoryBuffer in the message hub, numpy scalars) then fail to load. Users of this pair set this.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import torch
from mmengine.config import Config
from mmengine.dataset import DefaultSampler
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS
from mmengine.runner import Runner
from torch.utils.data import Dataset

SAMPLES = 20  # with batch size 2: 10 iterations an epoch
BATCH_SIZE = 2
ITERS_PER_EPOCH = SAMPLES // BATCH_SIZE
LOG_INTERVAL = 2
# The sleep is a floor of MMEngine's logged `time`: the last train line's `eta: 0:00:00` then bounds what is left
# to under 1.5 / 0.2 = 7.5 iterations, less than the epoch's 10 (lifecycle.ETA_SLACK = 1.5).
STEP_SECONDS = 0.2


def _healthy_loss(it: int) -> float:
    """A detection-like total loss: 2.4 at the start, falling towards 0.4, with a little wobble."""
    return 0.4 + 2.0 * math.exp(-it / 15) + 0.03 * math.sin(it * 1.7)


def _explosion_loss(it: int) -> float:
    return _healthy_loss(it) if it < 25 else 40.0 + 2.0 * (it - 25)


def _nan_loss(it: int) -> float:
    return _healthy_loss(it) if it < 17 else float("nan")


# Per scenario: the loss at each iteration (0-based, over the whole run), the mAP after each epoch (1-based
# index - 1), and what happens besides. After a fault the mAP is held flat, so that the fault is the only thing
# wrong with the run (a falling metric is a page of its own).
SCENARIOS: dict[str, dict] = {
    "healthy": {"loss": _healthy_loss, "map": [0.212, 0.305, 0.361, 0.392, 0.405]},
    "explosion": {"loss": _explosion_loss, "map": [0.212, 0.305, 0.306, 0.306, 0.306]},
    "nan": {"loss": _nan_loss, "map": [0.212, 0.305, 0.305, 0.305, 0.305]},
    # plateaus from epoch 3: with patience 2 and min_delta 0.01, EarlyStoppingHook stops after epoch 4 of 8
    "earlystop": {"loss": _healthy_loss, "map": [0.212, 0.305, 0.309, 0.307, 0.308, 0.306, 0.305, 0.304],
                  "max_epochs": 8, "early_stop": True},
    "oom": {"loss": _healthy_loss, "map": [0.212, 0.305, 0.361, 0.392, 0.405], "oom_at": (1, 4)},
    # the first attempt crashes in epoch 3 (after epoch 2's checkpoint); `--resume` then finishes the run
    "crash": {"loss": _healthy_loss, "map": [0.212, 0.305, 0.361, 0.392, 0.405], "crash_at": (2, 3)},
}


def scenario_of(name: str) -> dict:
    return SCENARIOS[name]


class ScriptedDataset(Dataset):
    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, idx: int) -> dict:
        return {"inputs": torch.full((2,), float(idx)), "data_samples": idx}


@MODELS.register_module()
class ScriptedDetector(BaseModel):
    """One weight, so that the optimizer, the checkpoints and resume are real; the loss is the script's."""

    def __init__(self, scenario: str = "healthy", step_seconds: float = STEP_SECONDS) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(2))
        self.script = scenario_of(scenario)
        self.step_seconds = step_seconds

    def forward(self, inputs, data_samples=None, mode: str = "tensor"):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = (x * self.weight).sum()
        if mode == "loss":
            if self.step_seconds:
                time.sleep(self.step_seconds)
            it = MessageHub.get_current_instance().get_info("iter", 0)
            scripted = torch.tensor(self.script["loss"](it), dtype=torch.float32)
            return {"loss": scripted + 0.0 * out}  # the scripted value, with a gradient path through the weight
        if mode == "predict":
            return [{"score": float(out)} for _ in range(x.shape[0])]
        return out


@METRICS.register_module()
class ScriptedMAP(BaseMetric):
    default_prefix = "coco"

    def __init__(self, scenario: str = "healthy", **kwargs) -> None:
        super().__init__(**kwargs)
        self.script = scenario_of(scenario)

    def process(self, data_batch, data_samples) -> None:
        self.results.extend(data_samples)

    def compute_metrics(self, results: list) -> dict:
        epoch = MessageHub.get_current_instance().get_info("epoch", 0)  # 0-based: the epoch just trained
        values = self.script["map"]
        return {"bbox_mAP": values[min(epoch, len(values) - 1)], "bbox_mAP_50": round(values[min(epoch, len(values) - 1)]
                                                                                       * 1.6, 3)}


@HOOKS.register_module()
class ScriptedFaultHook(Hook):
    """Ends the training where the scenario says: a CUDA OOM (as PyTorch raises it) or any other error."""

    def __init__(self, scenario: str = "healthy") -> None:
        self.script = scenario_of(scenario)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        at = (runner.epoch, batch_idx)
        if at == self.script.get("oom_at"):
            raise torch.cuda.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 1.50 GiB (GPU 0; 23.65 GiB total capacity; 21.87 GiB already "
                "allocated; 1.06 GiB free; 22.10 GiB reserved in total by PyTorch)")
        if at == self.script.get("crash_at"):
            raise RuntimeError("scripted crash: a data worker died")


@DATASETS.register_module()
def scripted_dataset() -> ScriptedDataset:
    return ScriptedDataset()


CONFIG = Path(__file__).with_name("scripted_config.py")


def build_from_cfg(args: argparse.Namespace) -> Runner:
    cfg = Config.fromfile(str(CONFIG))
    cfg.work_dir = args.work_dir
    cfg.resume = args.resume
    cfg.model.scenario = args.scenario
    cfg.model.step_seconds = args.step_seconds
    cfg.val_evaluator.scenario = args.scenario
    cfg.train_cfg.max_epochs = args.max_epochs
    cfg.custom_hooks = _custom_hooks(args)
    return Runner.from_cfg(cfg)


def build_in_python(args: argparse.Namespace) -> Runner:
    loader = {"batch_size": BATCH_SIZE, "num_workers": 0}
    return Runner(
        model=ScriptedDetector(args.scenario, args.step_seconds),
        work_dir=args.work_dir,
        train_dataloader=dict(dataset=ScriptedDataset(), sampler=dict(type=DefaultSampler, shuffle=True), **loader),
        val_dataloader=dict(dataset=ScriptedDataset(), sampler=dict(type=DefaultSampler, shuffle=False), **loader),
        train_cfg=dict(by_epoch=True, max_epochs=args.max_epochs, val_interval=1),
        val_cfg=dict(),
        val_evaluator=dict(type=ScriptedMAP, scenario=args.scenario),
        optim_wrapper=dict(optimizer=dict(type=torch.optim.SGD, lr=0.01, momentum=0.9)),
        default_hooks=dict(logger=dict(type="LoggerHook", interval=LOG_INTERVAL),
                           checkpoint=dict(type="CheckpointHook", interval=1)),
        custom_hooks=_custom_hooks(args),
        resume=args.resume,
        randomness=dict(seed=0),
    )


def _custom_hooks(args: argparse.Namespace) -> list[dict]:
    hooks = [dict(type="ScriptedFaultHook", scenario=args.scenario)]
    if scenario_of(args.scenario).get("early_stop"):
        hooks.append(dict(type="EarlyStoppingHook", monitor="coco/bbox_mAP", rule="greater", min_delta=0.01, patience=2))
    return hooks


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="healthy")
    parser.add_argument("--build", choices=("cfg", "python"), default="cfg")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--step-seconds", type=float, default=STEP_SECONDS, help="sleep in every training iteration")
    parser.add_argument("--max-epochs", type=int, default=None)
    args = parser.parse_args(argv)
    if args.max_epochs is None:
        args.max_epochs = scenario_of(args.scenario).get("max_epochs", 5)
    runner = (build_from_cfg if args.build == "cfg" else build_in_python)(args)
    runner.train()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
