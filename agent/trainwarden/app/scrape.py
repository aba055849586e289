"""/metrics bodies, encoded once per document version and format: a scrape of an unchanged fleet is a lookup.

The key also holds the agent's own figures that change while no run does (which collectors succeed, events
dropped, the notifier's counters and queue), so those are never served stale; the collectors' durations are not
in it: they are as of the encoding, at most one document bucket old.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client.registry import Collector

from trainwarden.app.documents import DocumentCache
from trainwarden.outputs import exposition
from trainwarden.outputs.metrics import CollectorStats, make_registry

Choose = Callable[[str], tuple[Callable[[Collector], bytes], str]]  # Accept header -> (encoder, content type)


class MetricsCache:
    MAX_FORMATS = 8  # content types kept (text, OpenMetrics, their escaping variants): a bound, not a guess

    def __init__(self, documents: DocumentCache, stats: CollectorStats, choose: Choose = exposition.choose,
                 catch_up: Callable[[], object] = lambda: None) -> None:
        self.documents = documents
        self.catch_up = catch_up  # an agent reading on demand reads the files before a scrape is answered
        self.stats = stats
        self.choose = choose
        self._lock = threading.Lock()  # one encoding at a time: a second scrape of the same version reuses it
        self._bodies: dict[str, tuple[tuple, bytes]] = {}
        self.encodings = 0  # bodies encoded so far: a scrape that was a lookup did not add to it

    def body(self, accept_header: str) -> tuple[bytes, str]:
        """(body, content type) for a scrape's Accept header."""
        encode, content_type = self.choose(accept_header)
        self.catch_up()  # outside the lock: concurrent scrapes are read for in one turn of the read loop
        with self._lock:
            version, report = self.documents.current()
            key = (version, self._own_figures())
            cached = self._bodies.get(content_type)
            if cached is not None and cached[0] == key:
                return cached[1], content_type
            body = encode(make_registry(lambda: report, self.stats))
            if len(self._bodies) >= self.MAX_FORMATS:
                self._bodies.clear()
            self._bodies[content_type] = (key, body)
            self.encodings += 1
            return body, content_type

    def _own_figures(self) -> tuple:
        stats = self.stats
        figures: tuple = (tuple(sorted(stats.success.copy().items())), stats.file_events_dropped)
        notifier = stats.notifier
        if notifier is not None:
            # copies first (atomic): the delivery thread may add a key meanwhile
            figures += (tuple(sorted(notifier.sent.copy().items())), tuple(sorted(notifier.failed.copy().items())),
                        notifier.queue_length(), notifier.store_write_errors)
        return figures
