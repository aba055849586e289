"""Every way trainwarden writes a time, in one place: the judge's texts in UTC (pure: no local time zone), the
views and messages in the reader's local time."""

from __future__ import annotations

import time


def ago(seconds: float) -> str:
    """`3 h 2 min ago`, `2 min 5 s ago`."""
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"
    return f"{seconds // 60} min {seconds % 60} s ago"


def stamp_utc(ts: float | None, now: float) -> str:
    """`2026-12-01 09:00:00 UTC (3 h 2 min ago)`: the same text whatever the zone of the machine that judges."""
    if ts is None:
        return "an unknown time"
    try:
        text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    except (OverflowError, OSError, ValueError):
        return "an unknown time"
    return f"{text} ({ago(now - ts)})"


def local(ts: float | None, fmt: str = "%Y-%m-%d %H:%M", missing: str = "—") -> str:
    """A timestamp in the reader's local time, or `missing`."""
    if not ts:
        return missing
    try:
        return time.strftime(fmt, time.localtime(ts))
    except (OverflowError, OSError, ValueError):
        return missing


def relative(ts: float, now: float) -> str:
    """`in 3h05m` / `3h05m ago`."""
    delta = ts - now
    hours, rest = divmod(int(abs(delta)), 3600)
    text = f"{hours}h{rest // 60:02d}m"
    return f"in {text}" if delta > 0 else f"{text} ago"
