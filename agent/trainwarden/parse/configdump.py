"""Facts from the config dump at the top of a log, and from a training config file.

The dump is Python source. It is never executed: `ast` reads literal values out of `dict(...)` calls, and a
dump that does not parse (cut short, odd syntax) falls back to plain regular expressions.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from trainwarden.model import ConfigFacts

_UNKNOWN = object()
_VERSION = re.compile(r"^\s*(MMEngine|MMCV|MMDetection|MMSegmentation|MMPretrain|PyTorch|TorchVision|mmcv|mmdet)\s*:\s*(\S+)")
_FALLBACK = {
    "max_epochs": re.compile(r"\bmax_epochs\s*=\s*(\d+)"),
    "max_iterations": re.compile(r"\bmax_iters\s*=\s*(\d+)"),
    "val_interval": re.compile(r"\bval_interval\s*=\s*(\d+)"),
    "batch_size": re.compile(r"\b(?:batch_size|samples_per_gpu)\s*=\s*(\d+)"),
}


def _value(node: ast.AST) -> Any:
    """A literal value from an AST node; `dict(...)` calls become dicts; anything else is _UNKNOWN."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return {kw.arg: _value(kw.value) for kw in node.keywords if kw.arg}
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values, strict=False):
            key = _value(k) if k is not None else _UNKNOWN
            if isinstance(key, str):
                out[key] = _value(v)
        return out
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Name):
        return node.id  # `type=EpochBasedTrainLoop` in pure-Python (lazy) configs
    if isinstance(node, ast.Attribute):
        return node.attr
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _UNKNOWN


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _assignments(source: str) -> dict[str, Any] | None:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    out: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            out[stmt.targets[0].id] = _value(stmt.value)
    return out


def _early_stopping(custom_hooks: Any) -> dict | None:
    if not isinstance(custom_hooks, list):
        return None
    for hook in custom_hooks:
        if isinstance(hook, dict) and "EarlyStopping" in str(hook.get("type", "")):
            keep = ("monitor", "patience", "min_delta", "rule", "stopping_threshold", "strict")
            return {k: hook[k] for k in keep if k in hook and hook[k] is not _UNKNOWN}
    return None


def facts_from_assignments(names: dict[str, Any], ts: float | None) -> ConfigFacts:
    def get(name: str) -> dict:
        value = names.get(name)
        return value if isinstance(value, dict) else {}

    train_cfg = get("train_cfg")
    runner = get("runner")  # mmcv: runner = dict(type='EpochBasedRunner', max_epochs=12)
    loop_type = str(train_cfg.get("type") or runner.get("type") or "")
    max_epochs = _int(train_cfg.get("max_epochs")) or _int(runner.get("max_epochs")) or _int(names.get("total_epochs"))
    max_iters = _int(train_cfg.get("max_iters")) or _int(runner.get("max_iters"))
    if "IterBased" in loop_type or (max_iters and not max_epochs):
        loop = "iteration"
    elif "EpochBased" in loop_type or max_epochs:
        loop = "epoch"
    else:
        loop = None
    val_interval = _int(train_cfg.get("val_interval")) or _int(get("evaluation").get("interval"))
    batch_size = _int(get("train_dataloader").get("batch_size")) or _int(get("data").get("samples_per_gpu"))
    work_dir = names.get("work_dir")
    evaluator = get("val_evaluator").get("type") or get("evaluation").get("metric")
    if isinstance(evaluator, list):
        evaluator = ",".join(str(e) for e in evaluator)
    return ConfigFacts(
        ts=ts,
        loop=loop,
        max_epochs=max_epochs if loop != "iteration" else None,
        max_iterations=max_iters if loop == "iteration" else None,
        val_interval=val_interval,
        batch_size=batch_size,
        work_dir=work_dir if isinstance(work_dir, str) else None,
        early_stopping=_early_stopping(names.get("custom_hooks")),
        evaluator=evaluator if isinstance(evaluator, str) else None,
    )


def _fallback_facts(source: str, ts: float | None) -> ConfigFacts:
    found = {}
    for name, pattern in _FALLBACK.items():
        m = pattern.search(source)
        if m:
            found[name] = int(m[1])
    loop = "epoch" if "max_epochs" in found else ("iteration" if "max_iterations" in found else None)
    return ConfigFacts(ts=ts, loop=loop, **found)


def parse_config_dump(source: str, ts: float | None = None) -> ConfigFacts:
    names = _assignments(source)
    if names is None:
        return _fallback_facts(source, ts)
    return facts_from_assignments(names, ts)


def parse_environment(text: str, ts: float | None = None) -> ConfigFacts | None:
    """Framework versions from the environment block (`MMEngine: 0.7.3`)."""
    versions = {}
    for line in text.splitlines():
        m = _VERSION.match(line)
        if m:
            versions[m[1]] = m[2]
    return ConfigFacts(ts=ts, versions=versions) if versions else None
