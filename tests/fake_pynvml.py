"""A stand-in for the `pynvml` module, injected into the NVML facade (never patched in globally).

It answers like nvidia-ml-py does (same function names, error values, units: milliwatts, millijoules, bytes,
percent) and can play: several GPUs, unsupported fields, no library, a GPU lost mid-run, a driver reload,
processes appearing and leaving. Error values are nvidia-ml-py's own (checked against nvidia-ml-py 13.6).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_NO_DATA = 21


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {3: "Not Supported", 9: "Driver Not Loaded", 12: "NVML Shared Library Not Found",
                15: "GPU is lost", 1: "Uninitialized"}.get(self.value, f"error {self.value}")


@dataclass
class FakeGPU:
    name: str = "NVIDIA GeForce RTX 4090"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    bus_id: str = "00000000:01:00.0"
    utilization: int = 97
    memory_used: int = 20 * 2**30
    memory_total: int = 24 * 2**30
    memory_reserved: int = 0  # held by the driver: in v1's `used`, not in v2's (nor in nvidia-smi's)
    temperature: int = 71
    power_mw: int = 250_000
    energy_mj: int = 123_456_789
    reasons: int = 0
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, used bytes or None)
    unsupported: set[str] = field(default_factory=set)  # function names that raise NotSupported
    lost: bool = False


@dataclass
class _Memory:
    used: int
    total: int
    free: int
    reserved: int = 0


@dataclass
class _Util:
    gpu: int
    memory: int


@dataclass
class _Pci:
    busId: str


@dataclass
class _Proc:
    pid: int
    usedGpuMemory: int | None


def make(gpus: list[FakeGPU], library_missing: bool = False, driver: str = "550.54.14",
         v2_memory: bool = True) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.nvmlMemory_v2 = 0x02000028
    for name, value in globals().items():
        if name.startswith("NVML_ERROR_"):
            setattr(m, name, value)
    m.NVML_TEMPERATURE_GPU = 0
    m.NVMLError = NVMLError
    m.gpus = gpus
    m.library_missing = library_missing
    m.initialized = False
    m.init_calls = 0
    m.shutdown_calls = 0
    m.calls = 0

    def check(gpu: FakeGPU | None = None, fn: str = "") -> None:
        m.calls += 1
        if not m.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if gpu is not None and gpu.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if gpu is not None and fn in gpu.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    def nvmlInit():
        if m.library_missing:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        m.initialized = True
        m.init_calls += 1

    def nvmlShutdown():
        m.initialized = False
        m.shutdown_calls += 1

    def nvmlSystemGetDriverVersion():
        check()
        return driver

    def nvmlDeviceGetCount():
        check()
        return len(m.gpus)

    def nvmlDeviceGetHandleByIndex(i):
        check()
        return m.gpus[i]

    def device(fn_name, getter):
        def fn(handle, *args, **kwargs):
            check(handle, fn_name)
            return getter(handle, *args, **kwargs)

        fn.__name__ = fn_name
        setattr(m, fn_name, fn)

    device("nvmlDeviceGetName", lambda g: g.name)
    device("nvmlDeviceGetUUID", lambda g: g.uuid)
    device("nvmlDeviceGetPciInfo", lambda g: _Pci(g.bus_id))
    device("nvmlDeviceGetUtilizationRates", lambda g: _Util(g.utilization, 50))
    def memory_info(g: FakeGPU, version=None):
        if version is None:  # v1: `used` is total - free, the driver's reservation included
            return _Memory(g.memory_used + g.memory_reserved, g.memory_total, g.memory_total - g.memory_used - g.memory_reserved)
        if not v2_memory:
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)  # nvmlDeviceGetMemoryInfo_v2 missing from an old driver
        return _Memory(g.memory_used, g.memory_total, g.memory_total - g.memory_used - g.memory_reserved, g.memory_reserved)

    device("nvmlDeviceGetMemoryInfo", memory_info)
    device("nvmlDeviceGetTemperature", lambda g, sensor: g.temperature)
    device("nvmlDeviceGetPowerUsage", lambda g: g.power_mw)
    device("nvmlDeviceGetTotalEnergyConsumption", lambda g: g.energy_mj)
    device("nvmlDeviceGetCurrentClocksEventReasons", lambda g: g.reasons)
    device("nvmlDeviceGetCurrentClocksThrottleReasons", lambda g: g.reasons)
    device("nvmlDeviceGetComputeRunningProcesses", lambda g: [_Proc(pid, mem) for pid, mem in g.processes])
    for fn in (nvmlInit, nvmlShutdown, nvmlSystemGetDriverVersion, nvmlDeviceGetCount, nvmlDeviceGetHandleByIndex):
        setattr(m, fn.__name__, fn)
    return m


def gpus(n: int) -> list[FakeGPU]:
    return [FakeGPU(uuid=f"GPU-{i:08d}-aaaa-bbbb-cccc-000000000000", bus_id=f"00000000:{i + 1:02X}:00.0") for i in range(n)]
