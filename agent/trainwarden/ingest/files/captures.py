"""Which run a capture of a training's stdout belongs to, when it sits outside that run's work dir.

A Slurm, nohup or tee capture usually sits beside or above the work dir of its training (the job's folder, the
work dir below it): then the two are one run, and the capture adds the errors only it shows (tracebacks, CUDA
OOM, NCCL). The capture says which work dir it is the stdout of (`Checkpoints will be saved to DIR`, logged by
MMEngine's and mmcv's CheckpointHook); a training that failed before its hooks ran says only when it started.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from trainwarden.ingest.files.discover import describe
from trainwarden.parse.formats import FORMATS
from trainwarden.parse.formats.base import FIRST_BYTES, Format
from trainwarden.parse.formats.training_capture import capture_framework
from trainwarden.parse.prefix import YearlessDates, clean_line, split_header


def _real(path: Path | str) -> str:
    return os.path.realpath(path)


_SAVED_TO = re.compile(rb"Checkpoints will be saved to (.+?)(?: by \w+)?\.?\r?\n")
CAPTURE_HEAD_BYTES = 1 << 20  # where a capture names its work dir: after the config dump and the hooks


def capture_work_dir(capture: Path) -> Path | None:
    """The work dir a capture names (MMEngine's and mmcv's `Checkpoints will be saved to DIR`), or None."""
    try:
        with capture.open("rb") as f:
            head = f.read(CAPTURE_HEAD_BYTES)
    except OSError:
        return None
    m = _SAVED_TO.search(head)
    if m is None:
        return None
    return Path(m[1].decode("utf-8", errors="replace").strip())


SESSION_START_SLACK = 120.0  # seconds from a session's name (its start) to the first line its trainer logs


def capture_start(capture: Path) -> float | None:
    """When the capture's first OpenMMLab line was logged (the trainer's local time), or None."""
    try:
        with capture.open("rb") as f:
            first = f.read(FIRST_BYTES)
        written = capture.stat().st_mtime
    except OSError:
        return None
    years = YearlessDates(time.localtime(written).tm_year, written)
    for line in first.decode("utf-8", errors="replace").split("\n"):
        header = split_header(clean_line(line), years)
        if header is not None and header.ts is not None and capture_framework(line.encode("utf-8")) is not None:
            return header.ts
    return None


def _session_start(session_id: str) -> float | None:
    try:
        return time.mktime(time.strptime(session_id, "%Y%m%d_%H%M%S"))
    except (ValueError, OverflowError):
        return None


def owner_of_capture(capture: Path, named: Path | None, work_dirs: list[Path], start: float | None = None,
                     formats: tuple[Format, ...] = FORMATS) -> Path | None:
    """The work dir among `work_dirs` of the run a capture is the stdout of: the one it names; or (a capture read
    on another machine than the trainer's, its paths differ) the one of the same name and parent's name under the
    capture's own folder (a capture sits beside or above its work dir); or, for a capture that names none (the
    training failed before its hooks ran), the one under the capture's folder with a session started at most
    SESSION_START_SLACK seconds before the capture's first line. Only one may fit."""
    home = _real(capture.parent)
    below = [wd for wd in work_dirs if (_real(wd) + os.sep).startswith(home + os.sep)]
    if named is not None:
        real = _real(named)
        for wd in work_dirs:
            if _real(wd) == real:
                return wd
        tail = named.parts[-2:]
        candidates = [wd for wd in below if Path(_real(wd)).parts[-len(tail):] == tail]
        return candidates[0] if len(candidates) == 1 else None
    if start is None:
        return None
    fits = []
    for wd in below:
        for session in describe(wd, formats=formats).sessions:
            began = _session_start(session.id)
            if began is not None and 0 <= start - began <= SESSION_START_SLACK:
                fits.append(wd)
                break
    return fits[0] if len(fits) == 1 else None
