"""JSON-lines logs: MMEngine's `vis_data/scalars.json` and mmcv's `<ts>.log.json`, and MMEngine's test dump.

They carry no timestamps and no checkpoint, resume or early-stop events, so the text log is the authority when
both exist (see README, "Which source wins"); these parsers serve sessions that have only the JSON file.
"""

from __future__ import annotations

import json

from trainwarden.model import EvalRecord, Record, TrainRecord
from trainwarden.parse.configdump import parse_config_dump
from trainwarden.parse.messages import evaluation_in_train_line

_NON_METRIC = frozenset({"step", "epoch", "iter", "lr", "base_lr", "time", "data_time", "memory", "mode", "eta"})


def _numbers(row: dict) -> dict[str, float]:
    out = {}
    for k, v in row.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)) or (isinstance(v, str) and v.lower() in ("nan", "inf", "-inf", "infinity", "-infinity")):
            out[k] = float(v)
    return out


def _load(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def _is_train_row(row: dict) -> bool:
    return "lr" in row or "base_lr" in row or any(k == "loss" or k.startswith("loss_") for k in row)


def parse_scalars_line(line: str, by_epoch: bool | None = None) -> Record | None:
    """One row of MMEngine's scalars.json. Train rows: `step` is the global iteration; val rows: `step` is the
    epoch (epoch-based loops) or the iteration. `by_epoch` says which, when known."""
    row = _load(line)
    if row is None:
        return None
    values = _numbers(row)
    step = row.get("step")
    step = step if isinstance(step, int) else None
    if _is_train_row(row):
        values = {k: v for k, v in values.items() if k not in ("step", "epoch", "iter")}
        epoch = row.get("epoch") if isinstance(row.get("epoch"), int) else None
        return TrainRecord(None, epoch, None, None, step, None, values, None)
    metrics = {k: v for k, v in values.items() if k not in _NON_METRIC}
    if not metrics:
        return None
    if step is None:
        return EvalRecord(None, "test", None, None, metrics)
    if by_epoch is False:
        return EvalRecord(None, "val", None, step, metrics)
    return EvalRecord(None, "val", step, None, metrics)


def parse_mmcv_json_line(line: str) -> Record | None:
    """One row of mmcv's `.log.json`: line 1 holds env_info and the config text; then train and val rows."""
    row = _load(line)
    if row is None:
        return None
    if "mode" not in row:
        config = row.get("config")
        return parse_config_dump(config) if isinstance(config, str) else None
    values = _numbers(row)
    epoch = row.get("epoch") if isinstance(row.get("epoch"), int) else None
    it = row.get("iter") if isinstance(row.get("iter"), int) else None
    if row["mode"] == "train":
        values = {k: v for k, v in values.items() if k not in ("epoch", "iter")}
        evaluated = evaluation_in_train_line(values)
        if evaluated is not None:  # MMSeg 0.x: an evaluation written as a train row; its `iter` is not the run's
            return EvalRecord(None, "val", None, None, evaluated)
        if epoch is not None:
            return TrainRecord(None, epoch, it, None, None, None, values, None)
        return TrainRecord(None, None, None, None, it, None, values, None)
    metrics = {k: v for k, v in values.items() if k not in _NON_METRIC}
    if not metrics:
        return None
    mode = "test" if row["mode"] == "test" else "val"
    return EvalRecord(None, mode, epoch, None if epoch is not None else it, metrics)


def parse_test_dump(text: str) -> EvalRecord | None:
    """MMEngine's `<ts>/<ts>.json` written by tools/test.py: one JSON object, no step, no trailing newline."""
    row = _load(text)
    if row is None:
        return None
    metrics = {k: v for k, v in _numbers(row).items() if k not in _NON_METRIC}
    return EvalRecord(None, "test", None, None, metrics) if metrics else None
