"""How the agent reads without a notifier (on demand: at each request, not at each write) and its own HTTP server
(GET and HEAD on socketserver, no http.server), for real: loopback sockets, inotify, watchdog."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_agent import get, line, train_line, value

from trainwarden.app.agent import Agent


@pytest.fixture
def agent_on():
    """Agents on loopback port 0, polling fast unless told otherwise, stopped after the test."""
    started = []

    def _start(root: Path, **kwargs) -> tuple[Agent, str]:
        agent = Agent([root], "127.0.0.1", 0, poll_interval=kwargs.pop("poll_interval", 0.2),
                      rediscover_interval=kwargs.pop("rediscover_interval", 0.5), **kwargs)
        agent.start()
        started.append(agent)
        assert agent.ready.wait(30)
        return agent, f"http://127.0.0.1:{agent.address[1]}"

    yield _start
    for agent in started:
        agent.stop()


def _raw(port: int, request: bytes) -> bytes:
    """What the server answers to these bytes, read until it closes the connection."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)  # all it will send: a request cut short is seen as one
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_server_answers_http_and_refuses_what_it_does_not_speak(tmp_path, agent_on):
    """The agent's own small HTTP server (no http.server): HEAD has the headers and no body, other methods, broken
    request lines and over-long lines are refused with their status, and a client that closes at once is no error."""
    root = tmp_path / "runs"
    root.mkdir()
    agent, base = agent_on(root)
    port = agent.address[1]
    head = _raw(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and b"Content-Length: 3\r\n" in head and head.endswith(b"\r\n\r\n")
    assert b"\r\nDate: " in head and b" GMT\r\n" in head
    assert _raw(port, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 405 ")
    assert _raw(port, b"GET\r\n\r\n").startswith(b"HTTP/1.0 400 ")
    assert _raw(port, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 414 ")
    assert _raw(port, b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n").startswith(b"HTTP/1.0 431 ")
    assert _raw(port, b"") == b""
    # Accept reaches /metrics whatever its spelling
    body = _raw(port, b"GET /metrics HTTP/1.1\r\naccept: application/openmetrics-text; version=1.0.0\r\n\r\n")
    assert b"Content-Type: application/openmetrics-text; version=1.0.0" in body and body.endswith(b"# EOF\n")
    assert get(base + "/healthz")[0] == 200


def test_reading_on_demand_reads_at_each_request_and_not_at_each_write(tmp_path, agent_on):
    """Without a notifier the agent reads on demand: a write wakes nothing (its inotify event waits in the kernel's
    queue), and the next scrape, /api/runs or page reads it first; a request that finds no event reads nothing.
    The poll and the walk an hour apart: only the request can bring these changes in."""
    root = tmp_path / "work_dirs"
    log = root / "exp" / "20251111_180600" / "20251111_180600.log"
    log.parent.mkdir(parents=True)
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    log.write_bytes(line(now, train_line(1, 50, "0.3000")))
    agent, base = agent_on(root, poll_interval=3600, rediscover_interval=3600)
    assert agent.reads_on_demand and agent.poll_seconds == 3600 and agent.file_events.drainable
    (reader,) = agent.fleet.current_readers()

    def scrape(name: str, **labels) -> float | None:
        return value(get(base + "/metrics")[2], name, **labels)

    def write(it: int) -> None:
        with log.open("ab") as f:
            f.write(line(now, train_line(1, it, "0.2900")))

    write(100)
    assert agent.file_events.drain() == [str(log)]  # its event was waiting: no thread took it, nothing read it
    assert reader.state.latest_iteration == 50 and agent.reader.catch_ups == 0
    write(150)
    assert scrape("trainwarden_train_iteration", run="exp") == 150  # the scrape read both lines
    assert agent.reader.catch_ups == 1
    unchanged = agent.reader.catch_ups_unchanged
    assert scrape("trainwarden_train_iteration", run="exp") == 150  # nothing changed: nothing read, a lookup
    assert (agent.reader.catch_ups, agent.reader.catch_ups_unchanged) == (1, unchanged + 1)
    write(200)
    runs = {r["run"]: r for r in json.loads(get(base + "/api/runs")[2])["runs"]}
    assert runs["exp"]["iteration"] == 200
    write(250)
    assert get(base + "/")[0] == 200 and reader.state.latest_iteration == 250  # the page's request read it
    (root / "exp" / "epoch_1.pth").write_bytes(b"x")
    assert scrape("trainwarden_checkpoint_files", run="exp") == 1
    other = root / "other" / "20251113_000000"
    other.mkdir(parents=True)
    (other / "20251113_000000.log").write_bytes(line(now, train_line(1, 50, "0.5000")))
    assert scrape("trainwarden_train_loss", run="other") == 0.5  # a new run: found for the very request
    assert agent.stats.file_events_dropped == 0


def test_reading_on_demand_without_inotify_reads_every_file_at_each_request(tmp_path, agent_on):
    """watchdog (macOS, Windows) keeps no queue to drain: each request has the loop read every file."""
    root = tmp_path / "work_dirs"
    log = root / "exp" / "20251111_180600" / "20251111_180600.log"
    log.parent.mkdir(parents=True)
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    log.write_bytes(line(now, train_line(1, 50, "0.3000")))
    agent, base = agent_on(root, poll_interval=3600, rediscover_interval=3600, file_events_backend="watchdog")
    assert agent.reads_on_demand and agent.file_events.source == "watchdog" and not agent.file_events.drainable
    for it in (100, 150):
        with log.open("ab") as f:
            f.write(line(now, train_line(1, it, "0.2900")))
        assert value(get(base + "/metrics")[2], "trainwarden_train_iteration", run="exp") == it
