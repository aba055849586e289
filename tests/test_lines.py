"""One way to split and decode lines (ingest/files/lines.py), and every reader using it: the tailer, the cold
scan, `tail`, and the console capture of `trainwarden run`."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from trainwarden.app.supervise import Attempt, Supervisor
from trainwarden.ingest.files.lines import LineSplitter, decode_line, last_lines

line_bytes = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b""))


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(line_bytes, max_size=30), cuts=st.lists(st.integers(0, 1200), max_size=10),
       tail=line_bytes, limit=st.integers(0, 40))
def test_any_cutting_gives_the_lines_of_the_whole(lines, cuts, tail, limit):
    """Fed in pieces of any size, the splitter gives each complete line once, in order, without its line end;
    drops each over-long line, counted once; holds the unfinished rest; and knows where that rest starts."""
    data = b"".join(line + b"\n" for line in lines) + tail
    splitter = LineSplitter(max_line_bytes=limit)
    got: list[bytes] = []
    done = 0
    for cut in sorted({min(c, len(data)) for c in cuts} | {len(data)}):
        got += splitter.split(data[done:cut])
        done = cut
    assert got == [line[:-1] if line.endswith(b"\r") else line for line in lines if len(line) <= limit]
    assert splitter.long_lines == sum(len(line) > limit for line in lines) + (len(tail) > limit)
    assert splitter.line_start == len(data) - len(tail)
    if len(tail) <= limit:
        assert splitter.pending == len(tail)
        assert splitter.rest() == (tail[:-1] if tail.endswith(b"\r") else tail)
    else:
        assert splitter.pending == 0 and splitter.skipping


def test_a_line_found_in_a_buffer_follows_the_same_rules():
    splitter = LineSplitter(max_line_bytes=8)
    assert splitter.line(b"abc\r") == b"abc"
    assert splitter.line(b"a\rb") == b"a\rb"  # a progress redraw is content, for the parsers' clean_line
    assert splitter.line(b"x" * 9) is None and splitter.long_lines == 1


def test_decoding_falls_back_to_gb18030_then_to_replacement():
    assert decode_line("完成 ✓".encode()) == ("完成 ✓", False)
    assert decode_line("训练开始".encode("gbk")) == ("训练开始", True)
    text, fallback = decode_line(b"\xff\xfe\x80ok")
    assert fallback and text.endswith("ok")


def test_last_lines_reads_backwards_and_keeps_the_half_written_last_line(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"".join(b"line %d\r\n" % i for i in range(100_000)) + "训练".encode("gbk") + b"\r\nhalf")
    assert last_lines(path, 3) == ["line 99999", "训练", "half"]
    assert last_lines(path, 0) == []
    path.write_bytes(b"only\n")
    assert last_lines(path, 5) == ["only"]


def _supervised(tmp_path: Path, payload: bytes) -> Attempt:
    """A real child writing `payload` to its stderr, captured by the Supervisor as `trainwarden run` does."""
    script = tmp_path / "child.py"
    script.write_text(f"import sys\nsys.stderr.buffer.write({payload!r})\nsys.stderr.flush()\n", encoding="utf-8")
    attempt = Attempt([sys.executable, str(script)])
    out = (tmp_path / "out").open("wb")
    sup = Supervisor(attempt.command, tmp_path / "console.log", terminal_out=out, terminal_err=out)
    sup.start(attempt)
    assert sup.wait(attempt) == 0
    out.close()
    return attempt


def test_the_capture_reads_errors_as_the_console_file_is_read_back(tmp_path):
    """A progress bar cleared after the error (`\\r` and spaces) hid the OOM from `run`'s own count, so
    --auto-resume retried with the same batch size, while the agent reading console.log saw it."""
    attempt = _supervised(tmp_path, b"epoch 3 100%\rRuntimeError: CUDA out of memory. Tried to allocate\r        \r\n")
    assert attempt.errors == {"cuda_oom": 1}


def test_the_capture_counts_the_last_line_without_its_newline_and_decodes_gbk(tmp_path):
    attempt = _supervised(tmp_path, "错误: NCCL error in: ProcessGroupNCCL.cpp\r\n".encode("gbk") + b"Killed")
    assert attempt.errors == {"nccl": 1, "host_oom": 1}
    assert attempt.evidence[0].startswith("错误")
