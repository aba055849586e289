"""Typed values <-> JSON-ready data, for every dataclass of the model: one generic pair instead of a hand-written
dict per type (a renamed field can no longer be dropped silently, and a remote document is read into the same
types as a local one).

`to_plain`: dataclasses become dicts (field order), enums their values, tuples lists, non-finite floats None.
`from_plain`: the reverse, tolerant as a reader of another agent's JSON must be: a missing or mistyped field
takes its default (or None), unknown keys are ignored, nothing raises on bad data but TypeError at the top.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from enum import Enum
from functools import cache
from typing import Any

# a dataclass whose one field named here is written flat into its own dict (GpuReport: the GPU's fields + runs)
FLATTEN_ATTRIBUTE = "__flatten__"


def to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        flat = getattr(type(value), FLATTEN_ATTRIBUTE, None)
        out: dict[str, Any] = {}
        for f in _fields(type(value)):
            item = getattr(value, f.name)
            if f.name == flat:
                out.update(to_plain(item))
            else:
                out[f.name] = to_plain(item)
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in value]
    return str(value)


@cache
def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(cls)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


_MISSING = object()


def from_plain(cls: type, data: Any) -> Any:
    """An instance of dataclass `cls` from JSON-ready data."""
    if not isinstance(data, Mapping):
        raise TypeError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
    return _dataclass(cls, data)


def _dataclass(cls: type, data: Mapping) -> Any:
    hints = _hints(cls)
    flat = getattr(cls, FLATTEN_ATTRIBUTE, None)
    kwargs = {}
    for f in _fields(cls):
        if not f.init:
            continue
        raw = data if f.name == flat else data.get(f.name, _MISSING)
        if raw is _MISSING:
            continue  # its default
        value = _convert(hints[f.name], raw)
        if value is _MISSING:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                kwargs[f.name] = _empty(hints[f.name])
            continue
        kwargs[f.name] = value
    for f in _fields(cls):  # a required field the data lacks
        if f.init and f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs[f.name] = _empty(hints[f.name])
    return cls(**kwargs)


def _empty(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if _is_optional(hint):
        return None
    if origin in (tuple, list):
        return ()
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return {}
    if hint is str:
        return ""
    if hint is bool:
        return False
    if hint in (int, float):
        return 0
    if isinstance(hint, type) and issubclass(hint, Enum):
        return next(iter(hint))
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, {})
    return None if not args else _empty(args[0])


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _convert(hint: Any, raw: Any) -> Any:
    """`raw` as `hint`, or _MISSING when it does not fit."""
    if hint is Any:
        return raw
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None:
            return None if type(None) in args else _MISSING
        for arg in args:
            if arg is type(None):
                continue
            value = _convert(arg, raw)
            if value is not _MISSING:
                return value
        return None if type(None) in args else _MISSING
    if raw is None:
        return _MISSING
    if origin is tuple:
        if not isinstance(raw, list):
            return _MISSING
        if len(args) == 2 and args[1] is Ellipsis:
            items = [_convert(args[0], v) for v in raw]
            return tuple(v for v in items if v is not _MISSING)
        if len(args) != len(raw):
            return _MISSING
        items = [_convert(a, v) for a, v in zip(args, raw, strict=True)]
        return _MISSING if any(v is _MISSING for v in items) else tuple(items)
    if origin in (dict, Mapping) or origin is typing.get_origin(Mapping[str, int]):
        if not isinstance(raw, Mapping):
            return _MISSING
        key_hint, value_hint = args if args else (Any, Any)
        out = {}
        for k, v in raw.items():
            key = _convert(key_hint, k)
            value = _convert(value_hint, v)
            if key is not _MISSING and value is not _MISSING:
                out[key] = value
        return out
    if isinstance(hint, type):
        if issubclass(hint, Enum):
            try:
                return hint(raw)
            except ValueError:
                return _MISSING
        if dataclasses.is_dataclass(hint):
            return _dataclass(hint, raw) if isinstance(raw, Mapping) else _MISSING
        if hint is bool:
            return raw if isinstance(raw, bool) else _MISSING
        if hint is int:
            if isinstance(raw, float) and raw.is_integer() and abs(raw) <= 2**63:
                return int(raw)  # 1.0e10 bytes written by a JSON encoder that knows no integers
            return raw if isinstance(raw, int) and not isinstance(raw, bool) else _MISSING
        if hint is float:
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                return _MISSING
            return float(raw) if math.isfinite(raw) else _MISSING
        if hint is str:
            return raw if isinstance(raw, str) else _MISSING
    return _MISSING
