"""Pure parsers for one logging message (the text after the header) of MMEngine and mmcv (MMDetection 2.x).

The two frameworks write different shapes that never collide, so one function serves both:
- MMEngine ``Epoch(train)  [1][  50/11439]  lr: 4.0000e-05  eta: 1 day, 2:03:04  time: 0.4567  ...``
- mmcv     ``Epoch [1][50/4139]<TAB>lr: 1.082e-03, eta: 9:13:28, time: 1.609, ...``
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable

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
    Record,
    Resumed,
    TrainRecord,
)

_LOOP = re.compile(
    r"(?P<unit>Epoch|Iter)(?:\((?P<mode>train|val|test)\))?\s*"
    r"\[\s*(?P<a>\d+)\s*(?:/\s*(?P<b>\d+)\s*)?\]"
    r"(?:\s*\[\s*(?P<c>\d+)\s*(?:/\s*(?P<d>\d+)\s*)?\])?"
)
# `key: value` items. The eta "1 day, 2:03:04" holds a comma and a space (mmcv separates items with ", ").
_ITEM = re.compile(r"([A-Za-z_][^\s:,]*): ((?:\d+ days?, )?[^\s,]+)")
_ETA = re.compile(r"(?:(\d+) days?, )?(\d+):(\d\d):(\d\d)$")
# Keys of progress lines: a val/test line holding only these carries no metrics.
PROGRESS_KEYS = frozenset({"eta", "time", "data_time", "memory", "lr", "base_lr", "iter_time"})

_SAVING = re.compile(r"Saving checkpoint at (\d+) (epoch|iter)")
_BEST_MMENGINE = re.compile(
    r"The best checkpoint with (?P<v>\S+) (?P<k>.+?) at (?P<n>\d+) (?P<u>epoch|iter) is saved to (?P<f>.+?)\.?\s*$"
)
_BEST_MMCV_FILE = re.compile(r"Now best checkpoint is saved as (?P<f>.+?)\.?\s*$")
_BEST_MMCV_SCORE = re.compile(r"Best (?P<k>\S+) is (?P<v>\S+) at (?P<n>\d+) (?P<u>epoch|iter)")
_BEST_REMOVED = re.compile(r"The previous best checkpoint (?P<p>.+?) (?:is|was) removed")
_LOAD = re.compile(r"Load checkpoint from (?P<p>.+?)\s*$")
_AUTO_RESUME = re.compile(r"Auto resumed from the latest checkpoint (?P<p>.+?)\.?\s*$")
_RESUMED = re.compile(r"resumed epoch:? (?P<e>\d+), iter:? (?P<i>\d+)")
_CKPT_DIR = re.compile(r"Checkpoints will be saved to (?P<p>.+?)(?: by \w+)?\.?\s*$")
_ES_NO_IMPROVE = re.compile(r"the monitored metric did not improve in the last (\d+) records\. best score: (\S+?)\.?\s*$")
_ES_INFINITE = re.compile(r"Monitored metric (?P<k>\S+) = (?P<v>\S+) is infinite")
_ES_THRESHOLD = re.compile(r"Stopping threshold reached: `(?P<k>[^`]+)` = (?P<v>\S+) is \w+ than")
_USER_ES = re.compile(r"Epoch (?P<e>\d+): (?P<k>[\w/@.\-]+)\s*=\s*(?P<v>[-+\d.eE]+|nan|inf)\s*\((?P<rest>.*)\)\s*$")
_USER_ES_THRESHOLD = re.compile(r"[<>]=?\s*(?P<t>[-+\d.eE]+)")
_USER_ES_COUNTER = re.compile(r"(?P<c>\d+)\s*/\s*(?P<p>\d+)")


def to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def eta_seconds(text: str) -> float | None:
    m = _ETA.match(text)
    if m is None:
        return None
    days = int(m[1]) if m[1] else 0
    return float(days * 86400 + int(m[2]) * 3600 + int(m[3]) * 60 + int(m[4]))


def parse_items(text: str) -> tuple[dict[str, float], float | None]:
    """Numeric `key: value` items of a loop line, and the eta in seconds if present."""
    values: dict[str, float] = {}
    eta = None
    for key, raw in _ITEM.findall(text):
        if key == "eta":
            eta = eta_seconds(raw)
            continue
        try:
            # interned: a run keeps ~1500 of these dicts with the same dozen keys; one string each, not one a line
            values[sys.intern(key)] = float(raw)
        except ValueError:
            continue  # a string item, e.g. mmcv's `bbox_mAP_copypaste: 0.7740 0.9175 ...` (first number dropped below)
    for key in [k for k in values if k.endswith("_copypaste")]:
        del values[key]
    return values, eta


def is_loss_key(key: str) -> bool:
    return "loss" in key.rsplit(".", 1)[-1]


def evaluation_in_train_line(values: dict[str, float]) -> dict[str, float] | None:
    """The metrics of a train-mode line that holds no loss but metrics: mmcv's IterBasedRunner (MMSeg 0.x) logs
    its evaluation as `Iter [500/160000]  lr: ..., aAcc: 0.7926, mIoU: 0.4183` (the `.log.json`: `"mode":
    "train"`), where 500 is not the run's iteration. None for a real train line."""
    if any(is_loss_key(k) for k in values):
        return None
    metrics = {k: v for k, v in values.items() if k not in PROGRESS_KEYS}
    return metrics or None


def parse_loop_line(message: str, ts: float | None) -> TrainRecord | EvalRecord | EvalProgress | None:
    m = _LOOP.match(message)
    if m is None:
        return None
    values, eta = parse_items(message[m.end() :])
    mode = m["mode"] or "train"
    by_epoch = m["unit"] == "Epoch"
    a, b, c, d = (int(x) if x is not None else None for x in (m["a"], m["b"], m["c"], m["d"]))
    if mode == "train":
        if not values:
            return None
        evaluated = evaluation_in_train_line(values)
        if evaluated is not None:  # evaluated at the run's current iteration (or this epoch): not a train step
            return EvalRecord(ts, "val", a if by_epoch else None, None, evaluated)
        if by_epoch:
            return TrainRecord(ts, a, c, d, None, None, values, eta)
        return TrainRecord(ts, None, None, None, a, b, values, eta)
    metrics = {k: v for k, v in values.items() if k not in PROGRESS_KEYS}
    if not metrics:
        return EvalProgress(ts, mode)
    if mode == "test":
        return EvalRecord(ts, "test", None, None, metrics)
    if by_epoch and (c is not None or (d is None and b is None)):
        return EvalRecord(ts, "val", a, None, metrics)  # `Epoch(val) [10][2/2]`, mmcv `Epoch(val) [1][2476]`
    return EvalRecord(ts, "val", None, None, metrics)  # `Iter(val) [17/17]`: the training iteration is context


def _user_early_stop(message: str, ts: float | None) -> EarlyStopCheck | None:
    m = _USER_ES.match(message)
    if m is None:
        return None
    rest = m["rest"]
    value = to_float(m["v"])
    if value is None:
        return None
    threshold_m = _USER_ES_THRESHOLD.search(rest)
    counter_m = _USER_ES_COUNTER.search(rest)
    counter = int(counter_m["c"]) if counter_m else 0
    patience = int(counter_m["p"]) if counter_m else None
    # "→ trigger" may reach us garbled (GBK/cp936 consoles), so a full counter also means triggered.
    triggered = "trigger" in rest.lower() or (patience is not None and counter >= patience > 0)
    return EarlyStopCheck(
        ts,
        int(m["e"]),
        m["k"],
        value,
        to_float(threshold_m["t"]) if threshold_m else None,
        counter,
        patience,
        triggered,
    )


def _saving(message: str, ts: float | None) -> Record | None:
    m = _SAVING.match(message)
    return CheckpointSaved(ts, "epoch" if m[2] == "epoch" else "iteration", int(m[1])) if m else None


def _best_mmengine(message: str, ts: float | None) -> Record | None:
    m = _BEST_MMENGINE.match(message)
    if m is None:
        return None
    unit = "epoch" if m["u"] == "epoch" else "iteration"
    return BestCheckpointSaved(ts, m["k"], to_float(m["v"]), unit, int(m["n"]), m["f"])


def _best_removed(message: str, ts: float | None) -> Record | None:
    m = _BEST_REMOVED.match(message)
    return BestCheckpointRemoved(ts, m["p"]) if m else None


def _best_mmcv_file(message: str, ts: float | None) -> Record | None:
    m = _BEST_MMCV_FILE.match(message)
    return BestCheckpointSaved(ts, None, None, None, None, m["f"]) if m else None


def _best_mmcv_score(message: str, ts: float | None) -> Record | None:
    m = _BEST_MMCV_SCORE.match(message)
    if m is None:
        return None
    unit = "epoch" if m["u"] == "epoch" else "iteration"
    return BestCheckpointSaved(ts, m["k"], to_float(m["v"]), unit, int(m["n"]), None)


def _load(message: str, ts: float | None) -> Record | None:
    m = _LOAD.match(message)
    return CheckpointLoaded(ts, m["p"]) if m else None


def _auto_resume(message: str, ts: float | None) -> Record | None:
    m = _AUTO_RESUME.match(message)
    return CheckpointLoaded(ts, m["p"], auto_resume=True) if m else None


def _resumed(message: str, ts: float | None) -> Record | None:
    m = _RESUMED.match(message)
    return Resumed(ts, int(m["e"]), int(m["i"])) if m else None


def _checkpoint_dir(message: str, ts: float | None) -> Record | None:
    m = _CKPT_DIR.match(message)
    return CheckpointDir(ts, m["p"]) if m else None


def _no_improvement(message: str, ts: float | None) -> Record | None:
    m = _ES_NO_IMPROVE.match(message)
    return EarlyStopTriggered(ts, "no_improvement", None, to_float(m[2]), message.strip()) if m else None


def _infinite(message: str, ts: float | None) -> Record | None:
    m = _ES_INFINITE.match(message)
    return EarlyStopTriggered(ts, "nonfinite", m["k"], to_float(m["v"]), message.strip()) if m else None


def _threshold(message: str, ts: float | None) -> Record | None:
    m = _ES_THRESHOLD.match(message)
    return EarlyStopTriggered(ts, "threshold", m["k"], to_float(m["v"]), message.strip()) if m else None


# The messages other than loop lines, by their first five characters: one dict lookup a line finds the only
# pattern worth trying. A new message shape is one function and one entry here.
_BY_HEAD: dict[str, Callable[[str, float | None], Record | None]] = {
    "Savin": _saving,  # Saving checkpoint at 12 epochs
    "The b": _best_mmengine,  # The best checkpoint with 0.6012 coco/bbox_mAP at 1 epoch is saved to best_....pth.
    "The p": _best_removed,  # The previous best checkpoint /w/best_....pth is removed
    "Now b": _best_mmcv_file,  # Now best checkpoint is saved as best_mAP_epoch_2.pth.
    "Best ": _best_mmcv_score,  # Best mAP is 0.8500 at 2 epoch.
    "Load ": _load,  # Load checkpoint from /w/epoch_2.pth
    "Auto ": _auto_resume,  # Auto resumed from the latest checkpoint /w/epoch_2.pth.
    "resum": _resumed,  # resumed epoch: 2, iter: 22878
    "Check": _checkpoint_dir,  # Checkpoints will be saved to /w.
    "the m": _no_improvement,  # the monitored metric did not improve in the last 2 records. best score: 0.601.
    "Monit": _infinite,  # Monitored metric coco/bbox_mAP = nan is infinite.
    "Stopp": _threshold,  # Stopping threshold reached: `coco/bbox_mAP` = 0.7 is greater than 0.6.
}


def parse_message(message: str, ts: float | None) -> Record | None:
    """One record from one logging message, or None when the message is of no interest."""
    head = message[:5]
    if head.startswith(("Epoch", "Iter")):
        rec = parse_loop_line(message, ts)
        if rec is not None:
            return rec
        return _user_early_stop(message, ts) if head == "Epoch" else None
    by_head = _BY_HEAD.get(head)
    if by_head is not None:
        return by_head(message, ts)
    if "infinite or NaN" in message:
        return ErrorLine(ts, "nonfinite_loss", message.strip())
    return None


def nonfinite_keys(values: dict[str, float]) -> list[str]:
    return [k for k, v in values.items() if not math.isfinite(v)]
