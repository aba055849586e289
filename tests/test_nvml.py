"""The NVML facade against the fake pynvml (injected): units, unsupported fields, no library, a lost GPU, a
driver reload, processes coming and going, one initialisation for many scrapes and no leaks."""

from __future__ import annotations

import gc
import threading

import fake_pynvml as fake
import pytest

from trainwarden.ingest.host.nvml import THROTTLE_REASONS, Nvml


def facade(module, **kw) -> Nvml:
    return Nvml(loader=lambda: module, **kw)


def test_reads_every_field_in_base_units():
    g = fake.FakeGPU(utilization=97, memory_used=3 * 2**30, memory_total=24 * 2**30, temperature=71, power_mw=250_500,
                     energy_mj=5_000_000, reasons=0x4 | 0x40, processes=[(4242, 2 * 2**30), (4243, None)])
    reading = facade(fake.make([g])).sample()
    assert reading.ok and reading.error is None
    (gpu,) = reading.gpus
    assert gpu == {
        "index": 0, "uuid": g.uuid, "name": "NVIDIA GeForce RTX 4090", "pci_bus_id": "00000000:01:00.0",
        "driver_version": "550.54.14", "utilization_ratio": 0.97, "memory_used_bytes": 3 * 2**30,
        "memory_total_bytes": 24 * 2**30, "temperature_celsius": 71.0, "power_watts": 250.5, "energy_joules": 5000.0,
        "throttle_reasons": {label: label in ("sw_power_cap", "hw_thermal_slowdown") for label in THROTTLE_REASONS.values()},
        "processes": [{"pid": 4242, "used_memory_bytes": 2 * 2**30}, {"pid": 4243, "used_memory_bytes": None}],
    }


@pytest.mark.parametrize("v2_memory, expected_used", [
    (True, 3 * 2**30),                    # driver R510 on: v2 leaves the driver's reservation out, as nvidia-smi does
    (False, 3 * 2**30 + 500 * 2**20),     # an older driver: v1 is all there is (and nvidia-smi showed the same)
])
def test_memory_used_is_what_nvidia_smi_shows(v2_memory, expected_used):
    g = fake.FakeGPU(memory_used=3 * 2**30, memory_reserved=500 * 2**20)
    module = fake.make([g], v2_memory=v2_memory)
    nvml = facade(module)
    for _ in range(3):
        assert nvml.sample().gpus[0]["memory_used_bytes"] == expected_used
    calls = module.calls
    nvml.sample()
    assert module.calls - calls == 7  # one memory query per sample: a v1-only driver is not asked for v2 again


def test_unsupported_fields_are_omitted_not_zero():
    g = fake.FakeGPU(unsupported={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetTotalEnergyConsumption",
                                  "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons",
                                  "nvmlDeviceGetUtilizationRates"})
    reading = facade(fake.make([g])).sample()
    gpu = reading.gpus[0]
    assert reading.ok
    assert gpu["power_watts"] is None and gpu["energy_joules"] is None and gpu["throttle_reasons"] is None
    assert gpu["utilization_ratio"] is None and gpu["temperature_celsius"] == 71.0


def test_no_library_keeps_going_and_retries_later():
    module = fake.make(fake.gpus(1), library_missing=True)
    now = [0.0]
    nvml = facade(module, retry_seconds=30, clock=lambda: now[0])
    reading = nvml.sample()
    assert not reading.ok and reading.gpus == [] and "Library Not Found" in reading.error
    now[0] = 10
    module.library_missing = False
    assert not nvml.sample().ok  # not retried before 30 s
    now[0] = 31
    assert nvml.sample().ok and nvml.init_count == 1


def test_missing_module():
    def loader():
        raise ImportError("No module named 'pynvml'")

    reading = Nvml(loader=loader).sample()
    assert not reading.ok and "not installed" in reading.error


def test_no_gpu_is_reported():
    reading = facade(fake.make([])).sample()
    assert not reading.ok and reading.gpus == [] and "no GPU" in reading.error


def test_a_gpu_lost_mid_run_then_a_driver_reload():
    module = fake.make(fake.gpus(2))
    nvml = facade(module)
    assert len(nvml.sample().gpus) == 2
    module.gpus[1].lost = True
    reading = nvml.sample()
    assert not reading.ok and [g["index"] for g in reading.gpus] == [0] and "lost" in reading.error
    # the driver is reloaded with the GPU back: NVML is shut down and initialised again
    module.gpus[1].lost = False
    reading = nvml.sample()
    assert reading.ok and len(reading.gpus) == 2
    assert module.shutdown_calls == 1 and module.init_calls == 2


def test_driver_unloaded_under_us():
    module = fake.make(fake.gpus(1))
    nvml = facade(module, retry_seconds=0)
    assert nvml.sample().ok
    module.initialized = False  # every call now answers Uninitialized
    assert not nvml.sample().ok
    assert nvml.sample().ok  # initialised again


def test_processes_appear_and_leave():
    module = fake.make(fake.gpus(1))
    nvml = facade(module)
    assert nvml.sample().gpus[0]["processes"] == []
    module.gpus[0].processes = [(100, 2**30)]
    assert [p["pid"] for p in nvml.sample().gpus[0]["processes"]] == [100]
    module.gpus[0].processes = []
    assert nvml.sample().gpus[0]["processes"] == []


def test_initialised_once_and_no_leak_after_ten_thousand_scrapes():
    module = fake.make(fake.gpus(8))
    nvml = facade(module)
    nvml.sample()
    threads_before = threading.active_count()
    gc.collect()
    objects_before = len(gc.get_objects())
    for _ in range(10_000):
        reading = nvml.sample()
    gc.collect()
    assert reading.ok and len(reading.gpus) == 8
    assert module.init_calls == 1 and nvml.init_count == 1
    assert threading.active_count() == threads_before
    assert len(gc.get_objects()) - objects_before < 500  # nothing accumulates per scrape
    assert len(nvml._devices) == 8  # handles cached, not re-fetched


def test_concurrent_scrapes_share_one_initialisation():
    module = fake.make(fake.gpus(2))
    nvml = facade(module)
    errors = []

    def scrape():
        try:
            for _ in range(200):
                assert nvml.sample().ok
        except AssertionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and module.init_calls == 1


@pytest.mark.parametrize("value", [None, 2**64 - 1])
def test_memory_not_available_is_omitted(value):
    g = fake.FakeGPU(processes=[(7, value)])
    assert facade(fake.make([g])).sample().gpus[0]["processes"] == [{"pid": 7, "used_memory_bytes": None}]
