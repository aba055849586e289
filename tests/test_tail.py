"""The tailer on the edge cases a training log meets: partial lines, truncation, rotation, re-creation, CRLF,
GBK bytes, over-long lines; and it never re-reads what it read."""

from __future__ import annotations

import os
from pathlib import Path

from trainwarden.ingest.files.tail import FileTailer


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def test_reads_only_new_bytes_and_waits_for_a_line_end(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"one\ntwo\nthr")
    t = FileTailer(log)
    assert t.poll().lines == ["one", "two"]
    assert t.poll().lines == []  # nothing new; the half line waits
    append(log, b"ee\nfour")
    assert t.poll().lines == ["three"]
    append(log, b"\n")
    assert t.poll().lines == ["four"]
    assert t.offset == log.stat().st_size


def test_never_rereads(tmp_path, monkeypatch):
    log = tmp_path / "a.log"
    log.write_bytes(b"x" * 1000 + b"\n")
    t = FileTailer(log)
    t.poll()
    reads = []
    real_open = Path.open

    def spy(self, mode="r", *a, **k):
        f = real_open(self, mode, *a, **k)
        orig_read = f.read

        def read(n=-1):
            data = orig_read(n)
            reads.append(len(data))
            return data

        f.read = read
        return f

    monkeypatch.setattr(Path, "open", spy)
    append(log, b"new line\n")
    assert t.poll().lines == ["new line"]
    assert sum(reads) <= len(b"new line\n") + 64  # the new bytes, plus at most the 64-byte identity check


def test_crlf_and_gbk(tmp_path):
    log = tmp_path / "win.log"
    log.write_bytes("训练开始\r\n".encode("gbk") + b"plain\r\n" + "完成 ✓\r\n".encode())
    batch = FileTailer(log).poll()
    assert batch.lines == ["训练开始", "plain", "完成 ✓"]
    assert batch.events.count("decode_fallback") == 1


def test_undecodable_bytes_never_stop_reading(tmp_path):
    log = tmp_path / "bad.log"
    log.write_bytes(b"ok\n\xff\xfe\x80garbage\nafter\n")
    lines = FileTailer(log).poll().lines
    assert lines[0] == "ok" and lines[2] == "after" and "garbage" in lines[1]


def test_truncation_starts_over(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"first session line 1\nfirst session line 2\n")
    t = FileTailer(log)
    assert len(t.poll().lines) == 2
    log.write_bytes(b"new\n")  # truncated and rewritten, shorter
    batch = t.poll()
    assert batch.lines == ["new"] and "truncated" in batch.events


def test_copytruncate_that_grew_past_the_old_offset_is_noticed(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"2023/06/11 19:45:14 old content line\n")
    t = FileTailer(log)
    t.poll()
    with log.open("r+b") as f:  # same file (same inode), rewritten from the start and longer than before
        f.seek(0)
        f.write(b"2024/01/01 00:00:00 new content, longer than before\nsecond\n")
    batch = t.poll()
    assert batch.lines == ["2024/01/01 00:00:00 new content, longer than before", "second"]
    assert "recreated" in batch.events


def test_rotation_drains_the_old_file_then_follows_the_new(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"a\n")
    t = FileTailer(log)
    assert t.poll().lines == ["a"]
    append(log, b"b\nc")  # written to the old file after our last read, last line without its newline
    os.replace(log, tmp_path / "train.log.1")
    log.write_bytes(b"d\n")
    batch = t.poll()
    assert batch.lines == ["b", "c", "d"]
    assert "rotated" in batch.events


def test_recreated_file_is_read_from_its_start(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"0123456789 old\n")
    t = FileTailer(log)
    t.poll()
    log.unlink()
    assert t.poll().lines == []  # gone: keep waiting
    log.write_bytes(b"fresh file, longer than the old one\n")
    batch = t.poll()
    assert batch.lines == ["fresh file, longer than the old one"]


def test_over_long_line_is_skipped_and_counted_without_holding_it(tmp_path):
    log = tmp_path / "a.log"
    t = FileTailer(log, max_line_bytes=1000, chunk_bytes=256)
    log.write_bytes(b"before\n" + b"x" * 700)
    assert t.poll().lines == ["before"]
    append(log, b"y" * 700)  # now over the limit, still no newline
    batch = t.poll()
    assert batch.lines == [] and batch.events == ["long_line"]
    assert t.pending_bytes == 0
    append(log, b"z" * 5000 + b"\nafter\n")
    batch = t.poll()
    assert batch.lines == ["after"] and "long_line" not in batch.events  # counted once


def test_a_complete_over_long_line_inside_one_read(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"a\n" + b"q" * 5000 + b"\nb\n")
    batch = FileTailer(log, max_line_bytes=1000).poll()
    assert batch.lines == ["a", "b"] and batch.events == ["long_line"]


def test_large_backlog_is_read_in_bounded_steps(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(20000)))
    t = FileTailer(log, max_bytes_per_poll=4096, chunk_bytes=1024)
    lines = []
    while True:
        batch = t.poll()
        lines += batch.lines
        if not batch.more:
            break
    assert lines == [f"line {i}" for i in range(20000)]


def test_missing_file_is_not_an_error(tmp_path):
    t = FileTailer(tmp_path / "not-yet.log")
    assert t.poll().lines == []
    (tmp_path / "not-yet.log").write_bytes(b"hello\n")
    assert t.poll().lines == ["hello"]


def test_the_reader_counts_what_happened_to_its_files_by_name(tmp_path):
    """Rotation, truncation, re-creation, over-long lines and fallback decodings each have their own count
    (`reader.file_events`), from the cold scan and from tailing alike; before, only over-long lines were counted,
    as "parse errors"."""
    from trainwarden.ingest.files.discover import describe
    from trainwarden.ingest.reader import RunReader

    session = tmp_path / "run" / "20251111_180600"
    session.mkdir(parents=True)
    log = session / "20251111_180600.log"
    train = b"2025/11/11 18:06:00 - mmengine - INFO - Epoch(train)  [1][ 50/100]  lr: 1.0e-04  loss: 0.3\n"
    log.write_bytes(train + b"x" * (2 << 20) + b"\n" + train)  # an over-long line, met by the cold scan
    reader = RunReader(describe(tmp_path / "run"))
    reader.refresh()
    assert reader.file_events == {"rotated": 0, "truncated": 0, "recreated": 0, "long_line": 1, "decode_fallback": 0}
    append(log, "2025/11/11 18:06:01 - mmengine - INFO - 训练\n".encode("gbk") + b"y" * (2 << 20) + b"\n")
    reader.poll()
    log.write_bytes(train)  # truncated: shorter than what was read
    reader.poll()
    with log.open("r+b") as f:  # rewritten in place from the start, longer than before
        f.write(train.replace(b"18:06:00", b"18:07:00") * 2)
    reader.poll()
    os.replace(log, session / "20251111_180600.log.1")
    log.write_bytes(train)
    reader.poll()
    assert reader.file_events == {"rotated": 1, "truncated": 1, "recreated": 1, "long_line": 2, "decode_fallback": 1}


def test_file_events_reach_the_metrics(tmp_path):
    """Rotations, truncations and over-long lines are counted per run and exported by name."""
    from prometheus_client.exposition import generate_latest

    from trainwarden.ingest.fleet import Fleet
    from trainwarden.judge.policy import DEFAULT_POLICY
    from trainwarden.outputs.metrics import CollectorStats, make_registry
    from trainwarden.outputs.status import status_report

    log = tmp_path / "exp" / "20251111_180600" / "20251111_180600.log"
    log.parent.mkdir(parents=True)
    line = "2025/11/11 18:06:00 - mmengine - INFO - Epoch(train)  [1][  50/1000]  lr: 4.0000e-05  loss: 0.3000\n"
    log.write_text(line * 3, encoding="utf-8")
    fleet = Fleet([tmp_path])
    fleet.rediscover()
    log.write_text(line, encoding="utf-8")  # copytruncate: shorter than what was read
    fleet.rediscover()
    report = status_report(fleet.snapshots(), DEFAULT_POLICY, 1_800_000_000.0)
    text = generate_latest(make_registry(lambda: report, CollectorStats())).decode()
    assert 'trainwarden_log_file_events_total{event="truncated",run="exp"} 1.0' in text
    assert 'trainwarden_log_file_events_total{event="rotated",run="exp"} 0.0' in text
