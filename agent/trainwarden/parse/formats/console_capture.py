"""A capture of the training's stdout and stderr in the work dir (`trainwarden run` writes `console.log`; nohup,
tee and slurm write others, found by their content: training_capture.py): where CUDA OOM, tracebacks and NCCL
errors land, which never reach the .log. Read for errors only: the text log is the authority for progress. Files
named elsewhere come with `--console FILE`."""

from __future__ import annotations

import re
from collections.abc import Iterator

from trainwarden.parse.formats.base import SESSION_ID, Found, LineParser, ParseContext, Role, WorkDirView
from trainwarden.parse.formats.text import SESSION_LOG, header_timestamp
from trainwarden.parse.formats.training_capture import capture_framework, is_capture_name
from trainwarden.parse.stream import LogStream

_NAME = re.compile(r"console.*\.(?:log|txt|out)$|\.console\.log$", re.IGNORECASE)
_NOT_LOGS = {"vis_data", "tf_logs", "vis", "visualization", "checkpoints"}  # folders MMEngine fills with other things
_MAX_FOLDERS = 8
_MAX_NAMES = 64


class ConsoleCapture:
    name = "console"
    kind = "console"
    role = Role.CONSOLE
    framework = None
    scan = None  # errors sit anywhere, and a capture is read whole: nothing to skip

    def matches(self, file_name: str, first_bytes: bytes) -> bool:
        return bool(_NAME.search(file_name))

    def find_files(self, work_dir: WorkDirView) -> Iterator[Found]:
        names = work_dir.names()
        # Other captures are told by their content, and only in a folder with session logs of its own: elsewhere a
        # capture is a run by itself (discover.py), and a folder of data is not read file by file.
        sessions = any(SESSION_ID.match(name) or SESSION_LOG.match(name) for name in names)
        yield from self._captures(work_dir, "", names, sessions)
        if not sessions:
            return
        # A job's output is often sent to a folder of the work dir (`#SBATCH -o WORK_DIR/logs/slurm-%j.out`): one
        # level down, in a few folders that are not sessions, a few files each (a folder of images costs a listing)
        folders = [n for n in names if not SESSION_ID.match(n) and n not in _NOT_LOGS and work_dir.is_dir(n)]
        for folder in sorted(folders)[:_MAX_FOLDERS]:
            inside = sorted(work_dir.names_in(folder))[:_MAX_NAMES]
            yield from self._captures(work_dir, folder + "/", inside, True)

    @staticmethod
    def _captures(work_dir: WorkDirView, prefix: str, names, sessions: bool) -> Iterator[Found]:
        for name in names:
            path = prefix + name
            if _NAME.search(name) and work_dir.is_file(path):
                yield Found(None, path)
            elif (sessions and is_capture_name(name) and not SESSION_LOG.match(name) and work_dir.is_file(path)
                  and capture_framework(work_dir.first_bytes(path)) is not None):
                yield Found(None, path)  # a nohup, tee or slurm capture of OpenMMLab lines

    def new_parser(self, context: ParseContext) -> LineParser:
        return LogStream(context.default_year, errors_only=True, offset=context.clock_offset,
                         written=context.written)

    def line_timestamp(self, line: str, default_year: int) -> float | None:
        return header_timestamp(line, default_year)


FORMAT = ConsoleCapture()
