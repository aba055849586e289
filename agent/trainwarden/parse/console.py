"""Errors that only reach stderr: CUDA OOM, CUDA and NCCL failures, tracebacks, the host running out of memory.

MMEngine and mmcv never write uncaught exceptions to their .log file, so these come from console captures
(`trainwarden run`, nohup, tee, slurm output). The patterns are strict enough not to fire on the environment
dump at the top of a log (``USE_NCCL=ON``, ``dist_cfg: {'backend': 'nccl'}``).
"""

from __future__ import annotations

import re

from trainwarden.model import ErrorLine

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "cuda_oom",
        re.compile(
            r"CUDA out of memory|OutOfMemoryError|(?:cuda runtime error \(2\)|error=2) ?: ?out of memory"
            r"|HIP out of memory|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED"
        ),
    ),
    (
        "nccl",
        re.compile(
            r"NCCL (?:error|WARN|Error)|nccl(?:Internal|System|UnhandledCuda|Remote|InvalidUsage|InvalidArgument)Error"
            r"|ProcessGroupNCCL.*(?:[Tt]imeout|[Ee]rror)|Watchdog caught collective operation timeout"
            r"|DistBackendError"
        ),
    ),
    (
        "cuda_error",
        re.compile(
            r"CUDA error: |cuda runtime error|CUDNN_STATUS_(?!SUCCESS)|CUBLAS_STATUS_(?!SUCCESS)"
            r"|device-side assert triggered|CUDA driver error"
        ),
    ),
    (
        "host_oom",
        re.compile(
            r"^\s*MemoryError\b|DataLoader worker \(pid.*\) is killed|Out of memory: Killed? process"
            r"|^Killed\s*$|exitcode\s*:\s*-9\b"
        ),
    ),
    ("traceback", re.compile(r"^\s*Traceback \(most recent call last\):")),
)


def parse_console_line(line: str, ts: float | None = None) -> ErrorLine | None:
    """The error a console line reports, or None. `line` is one line without its line end. A traceback's frame
    lines and the source lines they quote are no errors of their own: ConsoleErrors leaves them out."""
    if len(line) < 6:
        return None
    for kind, pattern in _PATTERNS:
        if pattern.search(line):
            return ErrorLine(ts, kind, line.strip()[:2000])
    return None


# A traceback's frame line, after the margin it is printed at: `  File "x.py", line 3, in f` (Python), with an
# exception group's `  | `, or a rank's label (torchrun's `[rank0]:` or `[default0]:`, srun --label's `0:`)
# before it. The margin is everything before `File`: never text, so no error message is taken for a frame.
_FRAME = re.compile(r'^(?P<margin>(?:\[[\w.-]*\]:|\d+:)?[ \t|+]*)File "[^"]*", line \d+, in ')


class ConsoleErrors:
    """The errors of one stream of console lines: parse_console_line's, less what a traceback quotes. Python
    prints each frame as `<margin>File "...", line N, in f` and then the frame's source and its `^^^` markers,
    each indented further than the frame line (`    raise torch.cuda.OutOfMemoryError(`); the error itself
    comes after the frames, at the traceback's own margin (`torch.OutOfMemoryError: CUDA out of memory. ...`).
    So a line that starts with the last frame line's margin and then whitespace is quoted source, not an event:
    one OOM is counted once, whatever code its traceback passes through."""

    def __init__(self) -> None:
        self._margin: str | None = None  # of the frame line whose source lines may follow

    def feed(self, line: str, ts: float | None = None) -> ErrorLine | None:
        margin = self._margin
        if margin is not None and line.startswith(margin) and line[len(margin):len(margin) + 1].isspace():
            return None  # the frame's source, or its markers
        frame = _FRAME.match(line)
        self._margin = frame["margin"] if frame is not None else None
        return None if frame is not None else parse_console_line(line, ts)

    def interrupt(self) -> None:
        """A line of another kind (a logging line with its header) came: what follows is no frame's source."""
        self._margin = None
