"""Cold start on a large log: the full current state without parsing every line.

A log of days is millions of train lines and a few thousand others (evaluations, checkpoints, resumes, early
stops). Parsing each line in Python is about 40 times slower than grep, so a large file is read in three parts:
- the head, line by line, up to the first train line (config dump, environment, load and resume lines);
- the middle, in large chunks, where one regular expression finds the lines that are *not* train lines (all
  train lines of one file share a fixed-width header and start with the same words), and only those are parsed;
  one train line per megabyte is also parsed as a sparse sample for the long-range history, and the train line
  before each evaluation or checkpoint gives it its epoch and iteration;
- the tail, line by line, back far enough to hold the recent train lines the short-term trends need.
Train lines in the middle are not parsed, so a nan in one of them is not counted (the latest values always are).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..parse.prefix import prefix_length
from ..parse.records import EvalRecord, Record, TrainRecord
from ..parse.stream import LogStream
from .tail import SIGNATURE_BYTES, decode_line

SMALL_FILE_BYTES = 8 << 20
HEAD_MAX_BYTES = 8 << 20
CHUNK_BYTES = 4 << 20
SAMPLE_EVERY_BYTES = 1 << 20
TAIL_MIN_BYTES = 2 << 20
TAIL_MAX_BYTES = 64 << 20
TAIL_TRAIN_LINES = 300
MAX_LINE_BYTES = 1 << 20
_TRAIN_HEAD = re.compile(r"(?:Epoch|Iter)\(train\)|(?:Epoch|Iter) \[")


@dataclass
class ScanResult:
    records: list[Record] = field(default_factory=list)
    offset: int = 0  # where the tailer goes on: the end of the last complete line
    signature: bytes = b""
    lines_parsed: int = 0
    decode_fallbacks: int = 0
    long_lines: int = 0


class _Sink:
    """Feeds decoded lines to the stream and collects what it returns."""

    def __init__(self, stream: LogStream, result: ScanResult) -> None:
        self.stream = stream
        self.result = result

    def line(self, raw: bytes) -> list[Record]:
        if len(raw) > MAX_LINE_BYTES:
            self.result.long_lines += 1
            return []
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        text, fallback = decode_line(raw)
        self.result.decode_fallbacks += fallback
        self.result.lines_parsed += 1
        out = self.stream.feed(text)
        self.result.records.extend(out)
        return out


def _train_signature(line: bytes) -> tuple[int, bytes] | None:
    """Header width and leading words of a train line ("Epoch(train)", "Iter(train)", "Epoch [", "Iter [")."""
    text = line.decode("utf-8", errors="replace").rstrip("\r")
    width = prefix_length(text)
    if width is None:
        return None
    m = _TRAIN_HEAD.match(text, width)
    if m is None:
        return None
    return len(text[:width].encode("utf-8")), m.group(0).encode("ascii")


def _candidate_regex(width: int, key: bytes) -> re.Pattern[bytes]:
    # A newline NOT followed by `width` header bytes and the train words marks a line worth parsing.
    # Validation progress lines (`Epoch(val) [1][ 50/2252]  eta: ...`) are skipped too: they carry no metrics.
    skip = re.escape(key) + rb"|(?:Epoch|Iter)\((?:val|test)\)[^\n]*\beta: "
    return re.compile(rb"\n(?![^\n]{%d}(?:%s))" % (width, skip))


def scan_file(path: Path, end: int, stream: LogStream, full_below: int = SMALL_FILE_BYTES) -> ScanResult:
    """Records of `path[0:end]` in file order; the partial last line is left to the tailer."""
    result = ScanResult()
    sink = _Sink(stream, result)
    with Path(path).open("rb") as f:
        result.signature = f.read(SIGNATURE_BYTES)
        f.seek(0)
        if end <= full_below:
            result.offset = _parse_range(f, 0, end, sink.line)
            return result
        head_end, signature = _scan_head(f, end, sink)
        if signature is None:  # not a framework log we know: parse everything
            result.offset = _parse_range(f, head_end, end, sink.line)
            return result
        width, key = signature
        tail_start = max(head_end, _tail_start(f, end, key))
        _scan_middle(f, head_end, tail_start, width, key, sink)
        result.offset = _parse_range(f, tail_start, end, sink.line)
    return result


def _parse_range(f, start: int, end: int, on_line: Callable[[bytes], object]) -> int:
    """Feed every complete line of [start, end) to on_line; return the offset after the last one."""
    f.seek(start)
    pos = start
    carry = b""
    while pos < end:
        data = f.read(min(CHUNK_BYTES, end - pos))
        if not data:
            break
        pos += len(data)
        data = carry + data if carry else data
        lines = data.split(b"\n")
        carry = lines.pop()
        if len(carry) > MAX_LINE_BYTES:  # an over-long line: drop what we hold of it, it is counted at its end
            carry = carry[-MAX_LINE_BYTES - 1 :]
        for raw in lines:
            on_line(raw)
    return pos - len(carry)


def _scan_head(f, end: int, sink: _Sink) -> tuple[int, tuple[int, bytes] | None]:
    """Parse lines up to and including the first train line; return where the head ends and the train shape."""
    f.seek(0)
    pos = 0
    limit = min(end, HEAD_MAX_BYTES)
    while pos < limit:
        raw = f.readline(min(MAX_LINE_BYTES + 2, limit - pos))
        if not raw or not raw.endswith(b"\n"):
            break
        pos += len(raw)
        line = raw[:-1]
        records = sink.line(line)
        if any(isinstance(r, TrainRecord) for r in records):
            return pos, _train_signature(line)
    return pos, None


def _tail_start(f, end: int, key: bytes) -> int:
    """Start of a tail window that holds at least TAIL_TRAIN_LINES train lines (or TAIL_MAX_BYTES)."""
    size = TAIL_MIN_BYTES
    while True:
        start = max(0, end - size)
        f.seek(start)
        data = f.read(end - start)
        if data.count(key) >= TAIL_TRAIN_LINES or start == 0 or size >= TAIL_MAX_BYTES:
            nl = data.find(b"\n")
            return start + nl + 1 if start > 0 and nl != -1 else start
        size *= 2


def _scan_middle(f, start: int, end: int, width: int, key: bytes, sink: _Sink) -> None:
    candidates = _candidate_regex(width, key)
    # One reusable buffer; the unfinished last line moves to its front. Byte 0 is the newline before the
    # first line, so the pattern sees every line start.
    buf = bytearray(CHUNK_BYTES + MAX_LINE_BYTES + 2)
    view = memoryview(buf)
    buf[0:1] = b"\n"
    filled = 1
    f.seek(start)
    pos = start
    while pos < end:
        n = f.readinto(view[filled : filled + min(CHUNK_BYTES, end - pos)])
        if not n:
            break
        pos += n
        filled += n
        cut = buf.rfind(b"\n", 0, filled)
        if cut > 0:
            _scan_chunk(buf, cut, candidates, key, sink)
        else:
            cut = 0
        rest = filled - cut
        if rest > MAX_LINE_BYTES:  # an over-long line: keep only its newline-less remainder's start marker
            sink.result.long_lines += 1
            buf[0:1] = b"\n"
            filled = 1
        else:
            buf[0:rest] = buf[cut:filled]
            filled = rest
    view.release()


def _scan_chunk(buf: bytes, cut: int, candidates: re.Pattern[bytes], key: bytes, sink: _Sink) -> None:
    """Parse, in file order, the candidate lines of buf[:cut] plus sparse samples of train lines."""
    starts = {m.start() + 1: False for m in candidates.finditer(buf, 0, cut)}
    for at in range(1, cut, SAMPLE_EVERY_BYTES):
        i = buf.find(key, at, cut)
        if i != -1:
            starts.setdefault(buf.rfind(b"\n", 0, i) + 1, True)
    last_train = -1
    for line_start in sorted(starts):
        if starts[line_start]:
            if line_start != last_train:
                _parse_train_at(buf, line_start, sink)
                last_train = line_start
            continue
        line_end = buf.find(b"\n", line_start, cut + 1)
        if line_end == -1:
            line_end = cut
        out = sink.result.records
        before = len(out)
        records = sink.line(bytes(buf[line_start:line_end]))
        if any(isinstance(r, EvalRecord) and r.epoch is None and r.iteration is None for r in records):
            # `Iter(val)` lines take their training iteration from the train line above them
            i = buf.rfind(key, max(0, line_start - (64 << 10)), line_start)
            context = buf.rfind(b"\n", 0, i) + 1 if i != -1 else -1
            if context >= 0 and context != last_train:
                moved = out[before:]
                del out[before:]
                _parse_train_at(buf, context, sink)
                out.extend(moved)
                last_train = context


def _parse_train_at(buf: bytes, line_start: int, sink: _Sink) -> None:
    line_end = buf.find(b"\n", line_start)
    out = sink.result.records
    before = len(out)
    sink.line(bytes(buf[line_start : line_end if line_end != -1 else len(buf)]))
    for k in range(before, len(out)):
        rec = out[k]
        if isinstance(rec, TrainRecord):
            out[k] = TrainRecord(
                rec.ts, rec.epoch, rec.epoch_iteration, rec.iterations_per_epoch, rec.iteration,
                rec.max_iterations, rec.values, rec.eta_seconds, sampled=True,
            )
