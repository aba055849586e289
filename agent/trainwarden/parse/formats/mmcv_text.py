"""mmcv's text log (MMDetection 2.x and its siblings): `work_dir/<ts>.log`, one file a session, beside the
checkpoints. Its train lines read ``<header>Epoch [1][50/4139]<TAB>lr: 1.082e-03, eta: ...`` (``Iter [50/3000]``
for iteration-based runners); mmcv writes no validation progress lines to the log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from trainwarden.parse.formats.base import Found, Role, ScanMarkers, WorkDirView
from trainwarden.parse.formats.text import SESSION_LOG, SessionLogFormat, first_dialect
from trainwarden.parse.prefix import prefix_length

MARKERS = ScanMarkers(header_width=prefix_length, train=re.compile(r"(?:Epoch|Iter) \["))


class MMCVText(SessionLogFormat):
    name = "mmcv"
    kind = "log"
    role = Role.LOG
    framework = "mmcv"
    scan = MARKERS

    def matches(self, file_name: str, first_bytes: bytes) -> bool:
        # a `<ts>.log` whose first line is not MMEngine's (mmcv's own header, or nothing written yet)
        return bool(SESSION_LOG.match(file_name)) and first_dialect(first_bytes) not in ("mmengine", "console")

    def find_files(self, work_dir: WorkDirView) -> Iterator[Found]:
        yield from self.flat_logs(work_dir)


FORMAT = MMCVText()
