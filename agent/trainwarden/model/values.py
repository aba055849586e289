"""The boundary rules for every value that enters a snapshot: numbers finite and in range, names printable.

A log can hold anything: a 400-digit epoch, `nan`, `1e308`, a folder name that is not UTF-8. What passes these
functions is safe for JSON, Prometheus labels and arithmetic; what does not is absent (None), never a crash.
"""

from __future__ import annotations

import math

# The largest whole number a float (JSON, Prometheus) holds exactly: an epoch or iteration beyond it is absurd.
MAX_COUNT = 2**53


def finite(value: object) -> float | None:
    """`value` as a finite float, or None (nan, inf, a number too large for a float, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def count(value: object) -> int | None:
    """`value` as a whole number in [0, 2**53], or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_COUNT else None


def text(value: str) -> str:
    """A name as JSON and Prometheus labels accept it: bytes that were not UTF-8 (a GBK folder name, kept by the
    file system API as surrogate escapes) are shown as `\\xNN`, the same way everywhere."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        raw = value.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        return value.encode("utf-8", "backslashreplace").decode("ascii")


def split_finite(values: dict[str, float]) -> tuple[dict[str, float], tuple[str, ...]]:
    """(the finite values, the keys whose value is nan/inf or out of range)."""
    good: dict[str, float] = {}
    bad: list[str] = []
    for key, value in values.items():
        number = finite(value)
        if number is None:
            bad.append(key)
        else:
            good[key] = number
    return good, tuple(bad)


def median(values: list[float]) -> float:
    """The median, as `statistics.median` gives it (not imported: it pulls in `fractions` and `decimal`, about
    1 MiB resident in the agent, for this one line)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
