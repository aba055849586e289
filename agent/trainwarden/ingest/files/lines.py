"""The last N lines of a file, read backwards in blocks (a log of gigabytes costs a few reads)."""

from __future__ import annotations

from pathlib import Path

from trainwarden.ingest.files.tail import decode_line

BLOCK = 64 << 10
MAX_BYTES = 16 << 20


def last_lines(path: Path, n: int) -> list[str]:
    if n <= 0:
        return []
    with Path(path).open("rb") as f:
        f.seek(0, 2)
        end = f.tell()
        pos = end
        data = b""
        while pos > 0 and data.count(b"\n") <= n and end - pos < MAX_BYTES:
            step = min(BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if pos > 0 and lines:
        lines.pop(0)  # cut in the middle of a line
    out = []
    for raw in lines[-n:]:
        text, _ = decode_line(raw[:-1] if raw.endswith(b"\r") else raw)
        out.append(text)
    return out
