"""Cold start on a large log: the full current state without parsing every line.

A log of days is millions of train lines and a few thousand others (evaluations, checkpoints, resumes, early
stops). Parsing each line in Python is about 40 times slower than grep, so a large file is read in three parts:
- the head, line by line, up to the first train line (config dump, environment, load and resume lines);
- the middle, in large chunks, where one regular expression finds the lines that are *not* train lines (all
  train lines of one file share a fixed-width header and start with the same words: the format's ScanMarkers say
  which), and only those are parsed;
  one train line per megabyte is also parsed as a sparse sample for the long-range history, and the train line
  before each evaluation or checkpoint gives it its epoch and iteration;
- the tail, line by line, back far enough to hold the recent train lines the short-term trends need.
Train lines in the middle are not parsed, so a nan in one of them is not counted (the latest values always are).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from trainwarden.ingest.files.lines import LineSplitter, decode_line
from trainwarden.ingest.files.tail import SIGNATURE_BYTES
from trainwarden.model import EvalRecord, Record, TrainRecord
from trainwarden.parse.formats import text_markers
from trainwarden.parse.formats.base import LineParser, ScanMarkers


@dataclass(frozen=True)
class ScanLimits:
    small_file_bytes: int = 8 << 20  # below this, every line is parsed
    head_max_bytes: int = 8 << 20
    chunk_bytes: int = 4 << 20
    sample_every_bytes: int = 1 << 20
    tail_min_bytes: int = 128 << 10
    tail_max_bytes: int = 64 << 20
    tail_train_lines: int = 300
    max_line_bytes: int = 1 << 20


DEFAULT_LIMITS = ScanLimits()
ANY_TEXT_FORMAT = text_markers()  # for a scan not told the file's format: the train lines of any text format


@dataclass
class ScanResult:
    records: list[Record] = field(default_factory=list)
    offset: int = 0  # where the tailer goes on: the end of the last complete line
    signature: bytes = b""
    lines_parsed: int = 0
    decode_fallbacks: int = 0
    long_lines: int = 0


class _Scan:
    """One scan: the parser of the file's lines, the limits, the line splitter, and what was found so far."""

    def __init__(self, stream: LineParser, limits: ScanLimits) -> None:
        self.stream = stream
        self.limits = limits
        self.result = ScanResult()
        self.lines = LineSplitter(limits.max_line_bytes)

    def line(self, raw: bytes) -> list[Record]:
        """Parse one line found in a buffer (without its newline)."""
        raw = self.lines.line(raw)
        return self.parse(raw) if raw is not None else []

    def parse(self, raw: bytes) -> list[Record]:
        """Parse one line as the splitter gives it."""
        text, fallback = decode_line(raw)
        self.result.decode_fallbacks += fallback
        self.result.lines_parsed += 1
        out = self.stream.feed(text)
        self.result.records.extend(out)
        return out

    def train_at(self, buf, line_start: int) -> None:
        """Parse the train line starting at `line_start` as a sparse sample."""
        line_end = buf.find(b"\n", line_start)
        out = self.result.records
        before = len(out)
        self.line(bytes(buf[line_start : line_end if line_end != -1 else len(buf)]))
        for k in range(before, len(out)):
            rec = out[k]
            if isinstance(rec, TrainRecord):
                out[k] = TrainRecord(
                    rec.ts, rec.epoch, rec.epoch_iteration, rec.iterations_per_epoch, rec.iteration,
                    rec.max_iterations, rec.values, rec.eta_seconds, sampled=True,
                )


def _train_signature(line: bytes, markers: ScanMarkers) -> tuple[int, bytes] | None:
    """Header width and leading words (what the format's `train` matches: "Epoch(train)", "Iter [", ...) of a train
    line; None when the line is not of the markers' shape (then every line is parsed)."""
    text = line.decode("utf-8", errors="replace").rstrip("\r")
    width = markers.header_width(text)
    if width is None:
        return None
    m = markers.train.match(text, width)
    if m is None:
        return None
    return len(text[:width].encode("utf-8")), m.group(0).encode("utf-8")


def _candidate_regex(width: int, key: bytes, markers: ScanMarkers) -> re.Pattern[bytes]:
    # A newline NOT followed by `width` header bytes and the train words (or another skippable message: validation
    # progress lines carry no metrics) marks a line worth parsing.
    skip = re.escape(key) + (b"|" + markers.skip if markers.skip else b"")
    return re.compile(rb"\n(?![^\n]{%d}(?:%s))" % (width, skip))


def scan_file(path: Path, end: int, stream: LineParser, limits: ScanLimits = DEFAULT_LIMITS,
              markers: ScanMarkers = ANY_TEXT_FORMAT) -> ScanResult:
    """Records of `path[0:end]` in file order; the partial last line is left to the tailer. `markers`: the file's
    format's (Format.scan)."""
    scan = _Scan(stream, limits)
    result = scan.result
    with Path(path).open("rb") as f:
        result.signature = f.read(SIGNATURE_BYTES)
        if end <= limits.small_file_bytes:
            result.offset = _parse_range(f, 0, end, scan)
        else:
            result.offset = _scan_large(f, end, scan, markers)
    result.long_lines += scan.lines.long_lines
    return result


def _scan_large(f, end: int, scan: _Scan, markers: ScanMarkers) -> int:
    head_end, signature = _scan_head(f, end, scan, markers)
    if signature is None:  # no train line of the format's shape: parse everything
        return _parse_range(f, head_end, end, scan)
    width, key = signature
    tail_start = max(head_end, _tail_start(f, end, key, scan.limits))
    _scan_middle(f, head_end, tail_start, width, key, markers, scan)
    return _parse_range(f, tail_start, end, scan)


def _parse_range(f, start: int, end: int, scan: _Scan) -> int:
    """Feed every complete line of [start, end) to the scan; return the offset after the last one."""
    f.seek(start)
    pos = start
    lines = scan.lines
    lines.reset()
    while pos < end:
        data = f.read(min(scan.limits.chunk_bytes, end - pos))
        if not data:
            break
        pos += len(data)
        for raw in lines.split(data):
            scan.parse(raw)
    if lines.skipping:  # the file ends inside the over-long line: the tailer takes it from its start (and counts it)
        scan.result.long_lines -= 1
    return start + lines.line_start


def _scan_head(f, end: int, scan: _Scan, markers: ScanMarkers) -> tuple[int, tuple[int, bytes] | None]:
    """Parse lines up to and including the first train line; return where the head ends and the train shape."""
    f.seek(0)
    pos = 0
    limit = min(end, scan.limits.head_max_bytes)
    while pos < limit:
        raw = f.readline(min(scan.limits.max_line_bytes + 2, limit - pos))
        if not raw or not raw.endswith(b"\n"):
            f.seek(pos)
            break
        pos += len(raw)
        line = raw[:-1]
        if any(isinstance(r, TrainRecord) for r in scan.line(line)):
            return pos, _train_signature(line, markers)
    return pos, None


def _tail_start(f, end: int, key: bytes, limits: ScanLimits) -> int:
    """Start of a tail window that holds at least `tail_train_lines` train lines, or `tail_max_bytes` when they
    are sparse - but always the last train line: it carries the current values."""
    size = limits.tail_min_bytes
    while True:
        start = max(0, end - size)
        f.seek(start)
        data = f.read(end - start)
        nl = data.find(b"\n") if start > 0 else -1
        whole = data[nl + 1 :]  # the window from its first whole line
        if start == 0 or whole.count(key) >= limits.tail_train_lines or (size >= limits.tail_max_bytes and key in whole):
            return start + nl + 1
        size *= 2


def _scan_middle(f, start: int, end: int, width: int, key: bytes, markers: ScanMarkers, scan: _Scan) -> None:
    candidates = _candidate_regex(width, key, markers)
    chunk, max_line = scan.limits.chunk_bytes, scan.limits.max_line_bytes
    # One reusable buffer; the unfinished last line moves to its front. Byte 0 is the newline before the
    # first line, so the pattern sees every line start.
    buf = bytearray(chunk + max_line + 2)
    view = memoryview(buf)
    buf[0:1] = b"\n"
    filled = 1
    base = start - 1  # file offset of buf[0]
    skipping = False  # the buffer's first line is the end of an over-long line
    f.seek(start)
    pos = start
    while pos < end:
        n = f.readinto(view[filled : filled + min(chunk, end - pos)])
        if not n:
            break
        pos += n
        filled += n
        cut = buf.rfind(b"\n", 0, filled)
        if cut > 0:
            first = buf.find(b"\n", 1) if skipping else 0
            skipping = False
            _scan_chunk(buf, first, cut, candidates, key, scan, _FileBefore(f, base))
        else:
            cut = 0
        rest = filled - cut
        if rest > max_line:  # an over-long line: drop it, count it, skip to its end
            scan.result.long_lines += 1
            buf[0:1] = b"\n"
            base = pos - 1
            filled = 1
            skipping = True
        else:
            buf[0:rest] = buf[cut:filled]
            base += cut
            filled = rest
    view.release()
    # The tail is parsed line by line and its first lines (an `Iter(val)`, say) take their context from the
    # train line before them, which the middle may have skipped: parse it.
    last = _FileBefore(f, 0).train_line_before(end, key)
    if last is not None:
        scan.train_at(last, 0)


class _FileBefore:
    """Reads the bytes just before a buffer position from the file (for a context line in the previous chunk)."""

    def __init__(self, f, base: int) -> None:
        self.f = f
        self.base = base

    def train_line_before(self, buf_pos: int, key: bytes, window: int = 64 << 10) -> bytes | None:
        end = self.base + buf_pos
        start = max(0, end - window)
        here = self.f.tell()
        try:
            self.f.seek(start)
            data = self.f.read(end - start)
        finally:
            self.f.seek(here)
        i = data.rfind(key)
        if i == -1:
            return None
        line_start = data.rfind(b"\n", 0, i) + 1
        if line_start == 0 and start > 0:
            return None  # cut: not a whole line
        line_end = data.find(b"\n", i)
        return bytes(data[line_start : line_end if line_end != -1 else len(data)])


def _scan_chunk(buf: bytearray, first: int, cut: int, candidates: re.Pattern[bytes], key: bytes, scan: _Scan,
                before: _FileBefore) -> None:
    """Parse, in file order, the candidate lines of buf[first:cut] plus sparse samples of train lines."""
    starts = {m.start() + 1: False for m in candidates.finditer(buf, first, cut)}
    for at in range(first + 1, cut, scan.limits.sample_every_bytes):
        i = buf.find(key, at, cut)
        if i != -1:
            starts.setdefault(buf.rfind(b"\n", 0, i) + 1, True)
    last_train = -1
    out = scan.result.records
    for line_start in sorted(starts):
        if starts[line_start]:
            if line_start != last_train:
                scan.train_at(buf, line_start)
                last_train = line_start
            continue
        line_end = buf.find(b"\n", line_start, cut + 1)
        n_before = len(out)
        records = scan.line(bytes(buf[line_start : line_end if line_end != -1 else cut]))
        if any(isinstance(r, EvalRecord) and r.epoch is None and r.iteration is None for r in records):
            # `Iter(val)` lines take their training iteration from the train line above them
            i = buf.rfind(key, max(first, line_start - (64 << 10)), line_start)
            context = buf.rfind(b"\n", 0, i) + 1 if i != -1 else -1
            if context < 0 or context != last_train:
                moved = out[n_before:]
                del out[n_before:]
                if context >= 0:
                    scan.train_at(buf, context)
                else:  # the train line above sits in the previous chunk
                    line = before.train_line_before(line_start, key)
                    if line is not None:
                        scan.train_at(line, 0)
                out.extend(moved)
                last_train = context
