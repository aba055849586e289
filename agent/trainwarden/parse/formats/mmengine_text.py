"""MMEngine's text log: `work_dir/<ts>/<ts>.log`, one session a folder (a resume starts another).

Its train lines read ``<header>Epoch(train)  [1][  50/11439]  lr: ...`` or ``Iter(train) [ 50/3000] ...``; its
validation progress lines (``Epoch(val) [1][ 50/2252]    eta: ...``) carry no metrics. A flat copy (the log
beside its checkpoints, without the `<ts>/` folder) is told from mmcv's log by the header of its first line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from trainwarden.parse.formats.base import Found, Role, ScanMarkers, WorkDirView, session_folders
from trainwarden.parse.formats.text import SESSION_LOG, SessionLogFormat, first_dialect
from trainwarden.parse.prefix import prefix_length

MARKERS = ScanMarkers(
    header_width=prefix_length,
    train=re.compile(r"(?:Epoch|Iter)\(train\)"),
    # Only the brackets before `eta:` are looked at: scanning whole lines would double the cost.
    skip=rb"(?:Epoch|Iter)\((?:val|test)\) *\[[\d /]+\](?:\[[\d /]+\])? +eta: ",
)


class MMEngineText(SessionLogFormat):
    name = "mmengine"
    kind = "log"
    role = Role.LOG
    framework = "mmengine"
    scan = MARKERS

    def matches(self, file_name: str, first_bytes: bytes) -> bool:
        return bool(SESSION_LOG.match(file_name)) and first_dialect(first_bytes) in ("mmengine", "console")

    def find_files(self, work_dir: WorkDirView) -> Iterator[Found]:
        for session in session_folders(work_dir):
            path = f"{session}/{session}.log"
            if work_dir.is_file(path):
                yield Found(session, path)
        yield from self.flat_logs(work_dir)


FORMAT = MMEngineText()
