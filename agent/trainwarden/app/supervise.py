"""`trainwarden run [--work-dir DIR] -- COMMAND...`: start the training, copy its stdout and stderr to the terminal
and to a console log beside the run (where CUDA OOM, tracebacks and NCCL errors land, which never reach the .log),
record its exit code, forward signals to it, and watch the run with an embedded agent that notifies.

`--auto-resume N`: after a crash, start again from the newest checkpoint (MMEngine `--resume`, mmcv
`--auto-resume`), after an out-of-memory with half the batch size, at most N times.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from trainwarden.ingest.files.lines import LineSplitter, decode_line
from trainwarden.judge.advice import with_resume
from trainwarden.parse.console import ConsoleErrors
from trainwarden.parse.prefix import clean_line

__all__ = ["Attempt", "Supervisor", "install_forwarding", "with_resume", "work_dir_of"]  # with_resume: judge.advice
log = logging.getLogger("trainwarden.run")


def work_dir_of(command: list[str]) -> Path | None:
    """`--work-dir X` / `--work-dir=X` in the command, else MMEngine's default `work_dirs/<config stem>`."""
    for i, arg in enumerate(command):
        if arg in ("--work-dir", "--work_dir") and i + 1 < len(command):
            return Path(command[i + 1])
        if arg.startswith(("--work-dir=", "--work_dir=")):
            return Path(arg.split("=", 1)[1])
    scripts = [i for i, a in enumerate(command) if a.endswith(".py")]
    configs = [command[i] for i in scripts[1:]] if scripts else []  # the first .py is the training script
    return Path("work_dirs") / Path(configs[0]).stem if configs else None


@dataclass
class Attempt:
    command: list[str]
    exit_code: int | None = None
    errors: dict[str, int] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)  # the error lines seen, last 20


class Supervisor:
    def __init__(self, command: list[str], console_path: Path, terminal_out=None, terminal_err=None) -> None:
        self.command = command
        self.console_path = console_path
        self.out = terminal_out or sys.stdout.buffer
        self.err = terminal_err or sys.stderr.buffer
        self.child: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.forwarded_signal: int | None = None

    def start(self, attempt: Attempt) -> subprocess.Popen:
        self.console_path.parent.mkdir(parents=True, exist_ok=True)
        self._console = self.console_path.open("ab")
        self.child = subprocess.Popen(attempt.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self._threads = [
            threading.Thread(target=self._copy, args=(self.child.stdout, self.out, attempt), daemon=True),
            threading.Thread(target=self._copy, args=(self.child.stderr, self.err, attempt), daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self.child

    def _copy(self, stream, terminal, attempt: Attempt) -> None:
        lines = LineSplitter()  # split as the console file is read back: a line without its end is bounded too
        errors = ConsoleErrors()  # one a stream: a traceback's quoted source is no error of its own
        while True:
            data = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not data:
                break
            try:
                terminal.write(data)
                terminal.flush()
            except (OSError, ValueError):
                pass  # a closed terminal must not stop the capture
            with self._lock:
                self._console.write(data)
                self._console.flush()
            for raw in lines.split(data):
                self._scan(raw, attempt, errors)
        if lines.pending:  # the child is gone: its last line is complete
            self._scan(lines.rest(), attempt, errors)

    def _scan(self, raw: bytes, attempt: Attempt, errors: ConsoleErrors) -> None:
        text, _ = decode_line(raw)
        found = errors.feed(clean_line(text))  # cleaned as the reader cleans the console file's lines
        if found is not None:
            attempt.errors[found.kind] = attempt.errors.get(found.kind, 0) + 1
            attempt.evidence = [*attempt.evidence[-19:], found.text]

    def wait(self, attempt: Attempt) -> int:
        code = self.child.wait()
        for t in self._threads:
            t.join(timeout=10)
        attempt.exit_code = code
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self._lock:
            self._console.write(f"[trainwarden] {stamp} the training process {self.child.pid} exited with code {code}\n"
                                .encode())
            self._console.close()
        return code

    def forward(self, signum: int) -> None:
        """Pass a signal on to the child (Ctrl-C, a scheduler's SIGTERM)."""
        self.forwarded_signal = signum
        child = self.child
        if child is None or child.poll() is not None:
            return
        try:
            if sys.platform == "win32":
                child.terminate()
            else:
                child.send_signal(signum)
        except OSError:
            pass


def install_forwarding(supervisor: Supervisor) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, lambda signum, frame: supervisor.forward(signum))
        except (ValueError, OSError):
            pass
