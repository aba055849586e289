"""The agent's own exposition writer must give exactly the bytes prometheus_client gives, in both formats, for real
registries (the real-log fixtures, 8 fake GPUs, a notifier, absurd values) and for any label value; anything it does
not write itself goes to the library. /metrics bodies are encoded once per document version: a scrape of an
unchanged fleet is a lookup, and anything that changes (a run, a GPU, a collector's success) is in the next one."""

from __future__ import annotations

import shutil
import time
import urllib.request

import fake_pynvml
import pytest
from conftest import DESIGN, REAL, Clock, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families
from stack import first_lines, line

from trainwarden.app.agent import Agent
from trainwarden.ingest.host.nvml import Nvml
from trainwarden.ingest.host.sources import HostSources
from trainwarden.outputs.exposition import choose
from trainwarden.outputs.notify.service import Notifier
from trainwarden.outputs.notify.targets import Target

PLAIN = ""
OPENMETRICS = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75," \
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"  # what Prometheus 2.x sends


PROMETHEUS_3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.1"


def both(registry) -> None:
    encode, ctype = choose(PLAIN)
    assert ctype.startswith("text/plain; version=0.0.4")
    assert encode(registry) == generate_latest(registry)
    for accept in (OPENMETRICS, PROMETHEUS_3):
        encode, ctype = choose(accept)
        assert ctype.startswith("application/openmetrics-text; version=1.0.0")
        library, library_ctype = choose_encoder(accept)
        assert ctype == library_ctype and encode(registry) == library(registry) == openmetrics_latest(registry)


def test_same_bytes_as_the_library_for_a_real_agent(tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(REAL, root)
    shutil.copytree(DESIGN, root / "design")
    gpus = fake_pynvml.gpus(8)
    gpus[3].unsupported = {"nvmlDeviceGetPowerUsage"}
    gpus[5].reasons = 0x4 | 0x40
    module = fake_pynvml.make(gpus)
    notifier = Notifier([Target("json://127.0.0.1:9/x")], tmp_path / "state", host="h")
    agent = Agent([root], "127.0.0.1", 0, host_sources=HostSources(nvml=Nvml(loader=lambda: module)), notifier=notifier)
    try:
        agent.fleet.rediscover()
        text = generate_latest(agent.registry).decode()
        assert text.count("\n") > 500 and "trainwarden_notifications_total" in text
        both(agent.registry)
    finally:
        agent.stop()


label_values = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ['a"b', "back\\slash", "new\nline", "\\n", '"', "", "中文/路径", "tab\there"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(label_values, label_values, st.floats(allow_nan=True)), max_size=8), st.text(max_size=30))
def test_same_bytes_for_any_label_value_and_help(samples, doc):
    registry = CollectorRegistry(auto_describe=False)

    class Families:
        def collect(self):
            gauge = GaugeMetricFamily("trainwarden_x", doc, labels=["run", "key"])
            counter = CounterMetricFamily("trainwarden_y", doc or "y", labels=["run"])
            for a, b, value in samples:
                gauge.add_metric([a, b], value)
                counter.add_metric([a], abs(value) if value == value else 0.0)
            yield gauge
            yield counter
            yield GaugeMetricFamily("trainwarden_z", "no labels", value=1.5)

    registry.register(Families())
    both(registry)


def test_anything_else_goes_to_the_library():
    registry = CollectorRegistry(auto_describe=False)

    class Families:
        def collect(self):
            yield GaugeMetricFamily("trainwarden_a", "a", value=1)
            yield HistogramMetricFamily("trainwarden_h", "h", buckets=[("1.0", 2), ("+Inf", 3)], sum_value=4)
            yield CounterMetricFamily("trainwarden_c", "c", value=2, created=1_700_000_000.0)

    registry.register(Families())
    both(registry)


def scrape(base: str, accept: str = "") -> bytes:
    request = urllib.request.Request(base + "/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.read()


def samples_of(body: bytes, openmetrics: bool = False) -> dict:
    parse = om_text_string_to_metric_families if openmetrics else text_string_to_metric_families
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in parse(body.decode())
            for s in fam.samples if fam.name != "trainwarden_collector_duration_seconds"}  # as of the encoding


def test_a_scrape_of_an_unchanged_fleet_is_a_lookup(tmp_path):
    log = tmp_path / "runs" / "exp" / "20251111_180600" / "20251111_180600.log"
    log.parent.mkdir(parents=True)
    log.write_text(first_lines(), encoding="utf-8")
    module = fake_pynvml.make(fake_pynvml.gpus(2))
    clock = Clock()
    clock.t = time.time()  # held still: no time bucket passes during the test
    agent = Agent([tmp_path / "runs"], "127.0.0.1", 0, clock=clock, gpu_interval=0.05,
                  host_sources=HostSources(nvml=Nvml(loader=lambda: module)))
    agent.start()
    try:
        assert agent.ready.wait(30)
        base = f"http://127.0.0.1:{agent.address[1]}"
        text, openmetrics = scrape(base), scrape(base, OPENMETRICS)
        builds, encodings = agent.documents.builds, agent.metrics.encodings
        for _ in range(20):
            assert scrape(base) == text and scrape(base, OPENMETRICS) == openmetrics
        assert (agent.documents.builds, agent.metrics.encodings) == (builds, encodings)  # nothing built or encoded
        # what was served is what the library makes of the same document, in both formats
        assert samples_of(text) == samples_of(generate_latest(agent.registry))
        assert samples_of(openmetrics, True) == samples_of(openmetrics_latest(agent.registry), True)
        # a run changes: the next scrape has it
        with log.open("a", encoding="utf-8") as f:
            f.write(line(150, 0.25))
        assert agent.refresh(10)
        assert samples_of(scrape(base))[("trainwarden_train_iteration", (("run", "exp"),))] == 1150
        # a GPU changes while no run does: in a scrape within the sampler's interval
        module.gpus[1].temperature = 85
        uuid = module.gpus[1].uuid
        wait_for(lambda: samples_of(scrape(base)).get(
            ("trainwarden_gpu_temperature_celsius", (("gpu", "1"), ("uuid", uuid)))) == 85, timeout=5)
        # one of the agent's own figures changes while no run or GPU does: not served stale
        agent.stats.success["backup"] = False  # as a failed checkpoint copy leaves it (nothing else writes it here)
        assert samples_of(scrape(base))[("trainwarden_collector_success", (("collector", "backup"),))] == 0
    finally:
        agent.stop()


ACCEPT_HEADERS = [
    "", PLAIN, OPENMETRICS, PROMETHEUS_3, "*/*", "text/plain", "text/plain;version=0.0.4", "text/plain; version=1.0.0",
    "text/plain;version=1.0.0;escaping=allow-utf-8", "application/openmetrics-text",
    "application/openmetrics-text; version=1.0.0; escaping=dots", "application/openmetrics-text;version=1.0.0;escaping=bogus",
    "application/openmetrics-text;version=0.0.1,text/plain;version=0.0.4", "application/openmetrics-text;version=2.0.0",
    "application/openmetrics-text;version=0.0.1,application/openmetrics-text;version=1.0.0",
    "text/html,application/json", "application/openmetrics-text;q=0.9", " text/plain ;version=0.0.4 , */*",
    "application/openmetrics-text;version=1.0.0;escaping=values;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8",
]
_ENTRY = st.builds(
    lambda kind, params: ";".join([kind, *params]),
    st.sampled_from(["application/openmetrics-text", "text/plain", "*/*", "text/html", " text/plain"]),
    st.lists(st.sampled_from(["version=1.0.0", "version=0.0.4", "version=0.0.1", "version=2.0.0", "version=",
                              "escaping=allow-utf-8", "escaping=underscores", "escaping=dots", "escaping=values",
                              "escaping=x", "q=0.5", " version=1.0.0", "charset=utf-8"]), max_size=3))


@pytest.mark.parametrize("accept", ACCEPT_HEADERS)
def test_the_content_type_is_negotiated_as_the_library_does(accept, tmp_path):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families())
    encode, ctype = choose(accept)
    library, library_ctype = choose_encoder(accept)
    assert ctype == library_ctype and encode(registry) == library(registry)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ENTRY, min_size=1, max_size=4).map(",".join))
def test_any_accept_header_gets_the_libraries_content_type(accept):
    assert choose(accept)[1] == choose_encoder(accept)[1]


class _Families:
    def collect(self):
        g = GaugeMetricFamily("trainwarden_x", 'a "help"\nline', labels=["run"])
        g.add_metric(['a\\b"c\nd'], 1.5)
        yield g
        c = CounterMetricFamily("trainwarden_y", "counted", labels=[])
        c.add_metric([], 3)
        yield c


def test_the_agent_never_loads_the_librarys_http_half(tmp_path):
    """The agent serves its own HTTP and encodes its own bodies: in its process, after scrapes in both formats and
    the page, neither prometheus_client's exposition module nor http.server, http.client or OpenSSL is loaded
    (about 13 MiB resident, bench/peer_figures.py), nor pynvml without NVIDIA's driver; the library still works in
    full when a caller asks for it."""
    import subprocess
    import sys

    root = tmp_path / "runs"
    shutil.copytree(REAL, root)
    program = f"""
import sys
from trainwarden.app.agent import Agent
agent = Agent([{str(root)!r}], "127.0.0.1", 0)
agent.start()
assert agent.ready.wait(60)
heavy = ["prometheus_client.exposition", "http.server", "http.client", "ssl", "_ssl", "hashlib", "email.utils",
         "decimal", "statistics", "watchdog"]
import ctypes
try:
    ctypes.CDLL("libnvidia-ml.so.1")
except OSError:  # no NVIDIA driver here: pynvml (1.5 MiB) is not even imported
    heavy.append("pynvml")
before = [m for m in heavy if m in sys.modules]  # http.client below is the test's client, not the agent's
import http.client as client
for accept in ("", {OPENMETRICS!r}):
    c = client.HTTPConnection(*agent.address)
    c.request("GET", "/metrics", headers={{"Accept": accept}})
    assert c.getresponse().status == 200
for path in ("/", "/api/runs"):
    c = client.HTTPConnection(*agent.address)
    c.request("GET", path)
    assert c.getresponse().status == 200
loaded = [m for m in heavy if m in sys.modules and m not in ("http.client", "email.utils", "ssl", "_ssl", "hashlib")]
from prometheus_client import generate_latest
assert b"trainwarden_train_epoch" in generate_latest(agent.registry)
agent.stop()
print(before, loaded)
"""
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[] []", out.stdout
