"""The log formats the agent reads, in the order discovery asks them: a file the first claims is not offered to
the others, the first format to claim a role in a session keeps it, and the first format found that names a
framework names the run's. To add a format: one module beside these and one line here (docs/formats.md)."""

from __future__ import annotations

from trainwarden.parse.formats import (
    console_capture,
    mmcv_json,
    mmcv_text,
    mmengine_scalars,
    mmengine_test_dump,
    mmengine_text,
    training_capture,
)
from trainwarden.parse.formats.base import Format, ScanMarkers

FORMATS: tuple[Format, ...] = (
    mmengine_text.FORMAT,
    mmengine_scalars.FORMAT,
    mmengine_test_dump.FORMAT,
    mmcv_text.FORMAT,
    mmcv_json.FORMAT,
    console_capture.FORMAT,
    training_capture.FORMAT,  # last: a capture by its content, once no other format reads the file
)


def by_name(name: str, formats: tuple[Format, ...] = FORMATS) -> Format:
    for fmt in formats:
        if fmt.name == name:
            return fmt
    raise KeyError(name)


def recognise(file_name: str, first_bytes: bytes, formats: tuple[Format, ...] = FORMATS) -> Format | None:
    """The format of a file from its name and first bytes, wherever it sits; None for a file no format reads."""
    for fmt in formats:
        if fmt.matches(file_name, first_bytes):
            return fmt
    return None


def text_markers(formats: tuple[Format, ...] = FORMATS) -> ScanMarkers:
    """Scan markers that recognise the train lines of every text format (a scan not told the file's format)."""
    return ScanMarkers.union(fmt.scan for fmt in formats if fmt.scan is not None)
