"""Incremental reading of a growing log file by byte offset.

- Never re-reads what was read: the offset only moves forward, except when the file was truncated or replaced.
- A half-written last line waits in a small buffer until its newline arrives.
- Truncation (size below the offset), rotation and re-creation (another file identity, or other first bytes at
  the same path) are followed; the rest of a rotated file is drained from its new name when it can be found.
- The file is opened, read and closed at each poll: a handle kept open on Windows would stop the trainer from
  renaming or deleting its own log.
- Lines are split and decoded by lines.py, as every reader does: CRLF, over-long lines (skipped and counted,
  never held whole), UTF-8 with the GB18030 fallback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from trainwarden.ingest.files.lines import MAX_LINE_BYTES, LineSplitter, decode_line

SIGNATURE_BYTES = 64


@dataclass
class TailBatch:
    lines: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # truncated, rotated, recreated, long_line, decode_fallback
    more: bool = False  # stopped at max_bytes: call again


@dataclass(frozen=True)
class FileIdentity:
    dev: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity | None:
        # st_ino is 0 on some Windows file systems: then identity is unknown and only size/signature are used.
        return cls(st.st_dev, st.st_ino) if st.st_ino else None


class FileTailer:
    def __init__(
        self,
        path: Path,
        offset: int = 0,
        max_line_bytes: int = MAX_LINE_BYTES,
        chunk_bytes: int = 1 << 20,
        max_bytes_per_poll: int = 32 << 20,
    ) -> None:
        self.path = Path(path)
        self.offset = offset
        self.chunk_bytes = chunk_bytes
        self.max_bytes_per_poll = max_bytes_per_poll
        self._lines = LineSplitter(max_line_bytes)
        self._identity: FileIdentity | None = None
        self._signature = b""
        self.size = 0
        self.mtime: float | None = None

    # -- public ---------------------------------------------------------------------------------------------
    def poll(self) -> TailBatch:
        batch = TailBatch()
        try:
            st = self.path.stat()
        except OSError:
            return batch  # gone for now (rotation in progress, or deleted): keep the offset, look again later
        identity = FileIdentity.of(st)
        if self._identity is not None and identity is not None and identity != self._identity:
            self._drain_rotated(batch)
            self._restart(batch, "rotated")
        elif st.st_size < self.offset:
            self._restart(batch, "truncated")
        self._identity = identity
        self.size, self.mtime = st.st_size, st.st_mtime
        if st.st_size <= self.offset:
            return batch
        try:
            with self.path.open("rb") as f:
                if self.offset > 0 and self._signature and not self._same_start(f):
                    self._restart(batch, "recreated")
                self._read(f, st.st_size, batch)
        except OSError:
            return batch
        return batch

    def skip_to(self, offset: int, signature: bytes = b"") -> None:
        """Continue from `offset` (after a cold-start scan read everything before it)."""
        self.offset = offset
        self._lines.reset()
        if signature:
            self._signature = signature
        try:
            st = self.path.stat()
            self._identity = FileIdentity.of(st)
            self.size, self.mtime = st.st_size, st.st_mtime
        except OSError:
            pass

    @property
    def pending_bytes(self) -> int:
        return self._lines.pending

    # -- internals ------------------------------------------------------------------------------------------
    def _restart(self, batch: TailBatch, event: str) -> None:
        batch.events.append(event)
        self.offset = 0
        self._lines.reset()
        self._signature = b""

    def _same_start(self, f) -> bool:
        f.seek(0)
        return f.read(len(self._signature)) == self._signature

    def _drain_rotated(self, batch: TailBatch) -> None:
        """Read the rest of the rotated file if it still sits in the same folder under another name."""
        old = self._identity
        try:
            candidates = list(self.path.parent.iterdir())
        except OSError:
            return
        for candidate in candidates:
            try:
                st = candidate.stat()
            except OSError:
                continue
            if FileIdentity.of(st) == old and candidate != self.path and st.st_size > self.offset:
                try:
                    with candidate.open("rb") as f:
                        self._read(f, st.st_size, batch)
                except OSError:
                    pass
                if self._lines.pending:  # the rotated file's last line is complete: nothing more will be added
                    self._emit(self._lines.rest(), batch)
                return

    def _read(self, f, size: int, batch: TailBatch) -> None:
        f.seek(self.offset)
        budget = min(size - self.offset, self.max_bytes_per_poll)
        while budget > 0:
            data = f.read(min(self.chunk_bytes, budget))
            if not data:
                break
            if self.offset < SIGNATURE_BYTES and len(self._signature) < SIGNATURE_BYTES:
                start = self.offset
                self._signature = (self._signature + data[: SIGNATURE_BYTES - start])[:SIGNATURE_BYTES]
            self.offset += len(data)
            budget -= len(data)
            self._split(data, batch)
        batch.more = self.offset < size

    def _split(self, data: bytes, batch: TailBatch) -> None:
        long_before = self._lines.long_lines
        for raw in self._lines.split(data):
            self._emit(raw, batch)
        batch.events.extend(["long_line"] * (self._lines.long_lines - long_before))

    @staticmethod
    def _emit(raw: bytes, batch: TailBatch) -> None:
        text, fallback = decode_line(raw)
        if fallback:
            batch.events.append("decode_fallback")
        batch.lines.append(text)
