"""The agent's own exposition writer must give exactly the bytes prometheus_client gives, in both formats, for real
registries (the real-log fixtures, 8 fake GPUs, a notifier, absurd values) and for any label value; anything it does
not write itself goes to the library."""

from __future__ import annotations

import shutil

import fake_pynvml
from conftest import DESIGN, REAL
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from trainwarden.app.agent import Agent
from trainwarden.ingest.host.nvml import Nvml
from trainwarden.ingest.host.sources import HostSources
from trainwarden.outputs.exposition import choose
from trainwarden.outputs.notify.service import Notifier
from trainwarden.outputs.notify.targets import Target

PLAIN = ""
OPENMETRICS = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75," \
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"  # what Prometheus 2.x sends


def both(registry) -> None:
    encode, ctype = choose(PLAIN)
    assert ctype.startswith("text/plain; version=0.0.4")
    assert encode(registry) == generate_latest(registry)
    encode, ctype = choose(OPENMETRICS)
    assert ctype.startswith("application/openmetrics-text")
    assert encode(registry) == openmetrics_latest(registry)


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
        agent.server.server_close()


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
