"""The one way bytes become lines and lines become text, for every reader of a log: the tailer, the cold-start scan,
`tail`, and the console capture of `trainwarden run`.

- A line ends at "\\n"; exactly one "\\r" before it belongs to the line end (CRLF). Any other "\\r" is content: a
  progress redraw, which the parsers' clean_line deals with.
- The half-written last line is held until its newline arrives, and given up only when the writer is known to be
  done (a rotated file, a closed pipe): `rest()`.
- A line longer than `max_line_bytes` is dropped and counted once, and never held whole in memory.
- Text is UTF-8; bytes that are not are decoded as GB18030 (Windows Chinese consoles write GBK), and as UTF-8 with
  replacement characters when even that fails.
"""

from __future__ import annotations

from pathlib import Path

MAX_LINE_BYTES = 1 << 20
BLOCK = 64 << 10
MAX_BYTES = 16 << 20


def decode_line(raw: bytes) -> tuple[str, bool]:
    """The text of one line and whether it needed a fallback decoding."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), True


class LineSplitter:
    """Splits a stream of bytes, fed in pieces of any size, into complete lines (bytes, without their line end).

    `line_start` is where the line not yet complete starts, counted from the first byte fed since `reset()`: the
    place to go on from when the bytes after it are read again later (the cold scan hands that place to the tailer).
    """

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self.long_lines = 0  # over-long lines dropped, over the splitter's life
        self.reset()

    def reset(self) -> None:
        """Forget the unfinished line (the file was truncated or replaced, or a new range starts)."""
        self._partial = b""
        self.skipping = False  # inside an over-long line: its bytes are dropped up to its newline
        self.fed = 0
        self.line_start = 0

    @property
    def pending(self) -> int:
        """Bytes held for the unfinished last line."""
        return len(self._partial)

    def split(self, data: bytes) -> list[bytes]:
        """The lines that `data` completes, in order; over-long ones dropped (counted in `long_lines`)."""
        self.fed += len(data)
        parts = data.split(b"\n")
        rest = parts.pop()  # after the last newline: not complete yet
        out: list[bytes] = []
        if parts:
            self.line_start = self.fed - len(rest)
            if self.skipping:
                self.skipping = False
                del parts[0]  # the end of the over-long line
            elif self._partial:
                parts[0] = self._partial + parts[0]
            self._partial = b""
            limit = self.max_line_bytes
            for raw in parts:
                if len(raw) > limit:
                    self.long_lines += 1
                elif raw.endswith(b"\r"):
                    out.append(raw[:-1])
                else:
                    out.append(raw)
        if not self.skipping:
            if len(self._partial) + len(rest) > self.max_line_bytes:
                self.long_lines += 1  # counted now, once: its end is dropped when it comes
                self._partial = b""
                self.skipping = True
            else:
                self._partial += rest
        return out

    def line(self, raw: bytes) -> bytes | None:
        """One line found some other way (a pattern match inside a buffer), without its "\\r"; None (counted) when
        it is over-long."""
        if len(raw) > self.max_line_bytes:
            self.long_lines += 1
            return None
        return raw[:-1] if raw.endswith(b"\r") else raw

    def rest(self) -> bytes:
        """Take the unfinished last line as complete: its writer is done."""
        raw, self._partial = self._partial, b""
        self.line_start = self.fed
        return raw[:-1] if raw.endswith(b"\r") else raw


def last_lines(path: Path, n: int) -> list[str]:
    """The last `n` lines of a file (the half-written last one included), read backwards in blocks: a log of
    gigabytes costs a few reads."""
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
    if pos > 0:  # cut in the middle of a line: start after it
        nl = data.find(b"\n")
        data = data[nl + 1 :] if nl != -1 else b""
    splitter = LineSplitter(max_line_bytes=len(data))  # the read is bounded already: every line is shown
    lines = splitter.split(data)
    if splitter.pending:
        lines.append(splitter.rest())
    return [decode_line(raw)[0] for raw in lines[-n:]]
