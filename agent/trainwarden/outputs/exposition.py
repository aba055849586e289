"""The text exposition of the agent's and the bridge's own registries, negotiated as prometheus_client does.

Why it exists beside the library's encoder: prometheus_client checks and escapes every label name of every
sample. The agent serves a body it encoded once per document version (app/scrape.py), so a scrape with nothing
changed never reaches an encoder; but when every run changed between two scrapes (Prometheus' 15 s scrapes of runs
that log every few seconds: the usual case) each scrape builds and encodes afresh, and there the library costs
half as much again. bench/load_figures.py, both encoders in the same run (50 runs x 8 GPUs, 3 487 series,
OpenMetrics and text in turn, a 2-core machine shared with other work):

    every run changed, the agent's own time:     this encoder 29.8 ms median / 53.5 ms p99, the library's 53.4 / 72.7
    every run changed, /metrics over HTTP:       this encoder 45.8 ms median,                the library's 60.7
    nothing changed, /metrics over HTTP:         1.35 ms median (/healthz 0.69 ms) and 1.10 ms: a lookup either way

Our families are gauges and counters with names and label names we chose (all in the legacy character set), so
only label values and help texts need escaping: the same bytes (tests/test_exposition.py compares them with the
library's on real registries and on any label value). Anything else (another metric type, a timestamp, an
exemplar, an unusual name, a format other than text 0.0.4 and OpenMetrics 1.0.0) is left to the library, and so
is everything if prometheus_client ever moves `floatToGoString`, which is not in its documented API.

The content type is negotiated here too, as `prometheus_client.exposition.choose_encoder` does, for the headers
whose answer is one of the two formats above (no header, Prometheus 2 and 3, text 0.0.4, OpenMetrics 1.0.0); any
other header goes to the library's own `choose_encoder`. Why: `prometheus_client.exposition` imports
`http.server`, `urllib.request` and `wsgiref` and with them OpenSSL, about 8 MiB resident in an agent that never
needs them (bench/peer_figures.py); it is imported only when a scrape needs it. tests/test_exposition.py holds
both negotiations to the same answer on every header it tries.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from prometheus_client.registry import Collector

try:  # the library's own float formatting; not in its documented API, so its absence only costs speed
    from prometheus_client.utils import floatToGoString
except ImportError:  # pragma: no cover - a prometheus_client that moved it: every scrape goes to the library
    floatToGoString = None

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class _Unusual(Exception):
    """A family this encoder does not write: the library's encoder writes the whole exposition instead."""


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _encode(registry: Collector, openmetrics: bool) -> bytes:
    out: list[str] = []
    good_labels: set[str] = set()
    for family in registry.collect():
        kind, name = family.type, family.name
        if kind not in ("gauge", "counter") or family.unit or not _METRIC_NAME.match(name):
            raise _Unusual(name)
        shown = name + "_total" if kind == "counter" and not openmetrics else name
        doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        if openmetrics:
            doc = doc.replace('"', r"\"")
        out.append(f"# HELP {shown} {doc}\n# TYPE {shown} {kind}\n")
        expected = name + "_total" if kind == "counter" else name
        for sample in family.samples:
            if sample.name != expected or sample.timestamp is not None or sample.exemplar is not None:
                raise _Unusual(sample.name)  # a counter's _created, a timestamp: not ours to write
            labels = sample.labels
            if labels:
                for key in labels:
                    if key not in good_labels:
                        if not _LABEL_NAME.match(key):
                            raise _Unusual(key)
                        good_labels.add(key)
                text = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(labels.items()))
                out.append(f"{sample.name}{{{text}}} {floatToGoString(sample.value)}\n")
            else:
                out.append(f"{sample.name} {floatToGoString(sample.value)}\n")
    if openmetrics:
        out.append("# EOF\n")
    return "".join(out).encode("utf-8")


CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_ESCAPINGS = ("allow-utf-8", "underscores", "dots", "values")
_NAMES_AS_THEY_ARE = ("allow-utf-8", "underscores")  # the escapings that leave our (legacy) names unchanged


def _parameter(tokens: list[str], key: str) -> str:
    """The first `key=value` of an Accept entry's parameters ("" when absent), as the library reads it."""
    for token in tokens:
        if "=" in token:
            name, value = token.strip().split("=", 1)
            if name == key:
                return value
    return ""


def negotiate(accept_header: str) -> tuple[bool, str] | None:
    """(openmetrics, content type) when the answer is one of this encoder's formats, else None: the library's
    `choose_encoder` decides (a version other than text 0.0.4 or OpenMetrics 1.0.0 named before any of those)."""
    for accepted in (accept_header or "").split(","):
        tokens = accepted.split(";")
        kind = tokens[0].strip()
        if kind == "application/openmetrics-text":
            version = _parameter(tokens, "version")
            if not version:
                return True, CONTENT_TYPE_OPENMETRICS
            if version != "1.0.0":
                return None
            escaping = _parameter(tokens, "escaping")
            escaping = escaping if escaping in _ESCAPINGS else "underscores"
            if escaping not in _NAMES_AS_THEY_ARE:
                return None  # "dots" and "values" rewrite even legacy names (`_` -> `__`, a `U__` prefix): the library's
            return True, f"{CONTENT_TYPE_OPENMETRICS}; escaping={escaping}"
        if kind == "text/plain" and _parameter(tokens, "version") not in ("", "0.0.4"):
            return None  # text 1.0.0 and what else the library may make of a version: its answer
    return False, CONTENT_TYPE_TEXT


def _library(accept_header: str) -> tuple[Callable[[Collector], bytes], str]:
    from prometheus_client.exposition import choose_encoder  # here: it imports http.server, urllib and OpenSSL

    return choose_encoder(accept_header)


def choose(accept_header: str) -> tuple[Callable[[Collector], bytes], str]:
    """(encoder, content type) for a scrape's Accept header."""
    ours = negotiate(accept_header) if floatToGoString is not None else None
    if ours is None:
        return _library(accept_header)
    openmetrics, content_type = ours

    def encode(registry: Collector) -> bytes:
        try:
            return _encode(registry, openmetrics)
        except _Unusual:
            return _library(accept_header)[0](registry)

    return encode, content_type
