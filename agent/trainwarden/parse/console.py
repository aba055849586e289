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
    """The error a console line reports, or None. `line` is one line without its line end."""
    if len(line) < 6:
        return None
    for kind, pattern in _PATTERNS:
        if pattern.search(line):
            return ErrorLine(ts, kind, line.strip()[:2000])
    return None
