"""GPU readings through NVML (the `pynvml` module of NVIDIA's nvidia-ml-py), in the manner of nvitop's wrapper:
lazy initialisation under a lock, one query helper that returns a default on error and logs a failing function
once, handles and static facts cached. A field a GPU does not support is omitted (None), never 0 or NaN.

No library, no driver, no GPU, a GPU fallen off the bus (GpuIsLost), a driver reload: `sample()` reports
ok=False with the reason and the GPUs it could still read; the agent keeps serving everything else. After a
failure that invalidates handles, the next sample shuts NVML down and initialises it again; a library or driver
that is missing is retried at most every `retry_seconds`.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

log = logging.getLogger("trainwarden.nvml")

# NVML clock event ("throttle") reasons: bit -> label
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
_NOT_SUPPORTED = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND", "NVML_ERROR_NO_DATA")
# errors after which cached handles are worthless: start NVML over at the next sample
_RESET = ("NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_UNINITIALIZED", "NVML_ERROR_RESET_REQUIRED", "NVML_ERROR_DRIVER_NOT_LOADED",
          "NVML_ERROR_LIB_RM_VERSION_MISMATCH")


class _DeviceLost(Exception):
    pass


@dataclass
class GpuReading:
    gpus: list[dict] = field(default_factory=list)
    ok: bool = True
    error: str | None = None
    duration_seconds: float = 0.0


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


class NvmlLibraryNotFound(Exception):
    def __str__(self) -> str:
        return "NVML Shared Library Not Found"  # pynvml's own words for it


def _load_pynvml() -> ModuleType:
    if sys.platform.startswith("linux"):
        # the driver's library first: pynvml's module (and ctypes.util, tempfile, random under it) is about 1.5 MiB
        # resident, kept for nothing on a host without NVIDIA's driver; pynvml loads this very file itself
        import ctypes

        try:
            ctypes.CDLL("libnvidia-ml.so.1")
        except OSError:
            raise NvmlLibraryNotFound() from None
    return importlib.import_module("pynvml")


class Nvml:
    def __init__(self, loader: Callable[[], ModuleType] = _load_pynvml, retry_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._loader = loader
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._nvml: ModuleType | None = None
        self._ready = False
        self._reset_needed = False
        self._next_try = 0.0
        self._unavailable: str | None = None
        self._logged: set[str] = set()
        self._devices: list[dict] = []  # cached: handle and static facts per index
        self._driver: str | None = None
        self._memory_v1_only = False
        self.init_count = 0

    # -- lifecycle -------------------------------------------------------------------------------------------
    def _error_name(self, exc: Exception) -> str | None:
        nvml = self._nvml
        value = getattr(exc, "value", None)
        if nvml is None or value is None:
            return None
        for name in (*_NOT_SUPPORTED, *_RESET):
            if getattr(nvml, name, object()) == value:
                return name
        return None

    def _is_nvml_error(self, exc: Exception) -> bool:
        base = getattr(self._nvml, "NVMLError", None)
        return base is not None and isinstance(exc, base)

    def _ensure(self) -> bool:
        if self._ready and not self._reset_needed:
            return True
        if self._reset_needed:
            self._shutdown_locked()
        if self._clock() < self._next_try:
            return False
        try:
            if self._nvml is None:
                self._nvml = self._loader()
            self._nvml.nvmlInit()
        except ImportError:
            return self._fail("the pynvml module (nvidia-ml-py) is not installed")
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ... or anything a broken driver raises
            if self._nvml is not None and not self._is_nvml_error(exc):
                log.debug("nvmlInit failed", exc_info=True)
            return self._fail(f"NVML unavailable: {exc}")
        self.init_count += 1
        self._ready = True
        self._unavailable = None
        try:
            self._driver = _text(self._nvml.nvmlSystemGetDriverVersion())
            count = int(self._nvml.nvmlDeviceGetCount())
            self._devices = [self._static(i) for i in range(count)]
        except Exception as exc:
            self._reset_needed = True
            return self._fail(f"NVML device enumeration failed: {exc}")
        if not self._devices:
            self._reset_needed = True
            return self._fail("NVML finds no GPU")
        return True

    def _static(self, index: int) -> dict:
        handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
        pci = self.query("nvmlDeviceGetPciInfo", handle)
        bus_id = getattr(pci, "busId", None) if pci is not None else None
        return {
            "handle": handle,
            "index": index,
            "uuid": _text(self.query("nvmlDeviceGetUUID", handle, default=f"GPU-{index}")),
            "name": _text(self.query("nvmlDeviceGetName", handle, default="unknown")),
            "pci_bus_id": _text(bus_id) if bus_id is not None else None,
        }

    def _fail(self, reason: str) -> bool:
        self._ready = False
        self._unavailable = reason
        self._next_try = self._clock() + self._retry_seconds
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("GPU readings unavailable: %s", reason)
        return False

    def _shutdown_locked(self) -> None:
        if self._ready and self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:  # shutting down a driver that is already gone: nothing left to release
                log.debug("nvmlShutdown failed: %s", exc)
        self._ready = False
        self._reset_needed = False
        self._devices = []

    def close(self) -> None:
        with self._lock:
            self._shutdown_locked()

    # -- queries ---------------------------------------------------------------------------------------------
    def query(self, function: str, *args, default=None, **kwargs):
        """Call an NVML function; `default` when the GPU does not support it or it fails (logged once)."""
        fn = getattr(self._nvml, function, None)
        if fn is None:
            return default
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not self._is_nvml_error(exc):
                raise
            name = self._error_name(exc)
            if name in _RESET:
                self._reset_needed = True
                raise _DeviceLost(f"{function}: {exc}") from None
            if name not in _NOT_SUPPORTED and function not in self._logged:
                self._logged.add(function)
                log.warning("%s failed: %s (reported once)", function, exc)
            return default

    def sample(self) -> GpuReading:
        start = time.perf_counter()
        with self._lock:
            reading = self._sample_locked()
        reading.duration_seconds = time.perf_counter() - start
        return reading

    def _sample_locked(self) -> GpuReading:
        if not self._ensure():
            return GpuReading(ok=False, error=self._unavailable)
        reading = GpuReading()
        for device in self._devices:
            try:
                reading.gpus.append(self._read(device))
            except _DeviceLost as exc:
                reading.ok = False
                reading.error = f"GPU {device['index']} ({device['uuid']}) lost: {exc}"
                if reading.error not in self._logged:
                    self._logged.add(reading.error)
                    log.warning("%s", reading.error)
        return reading

    def _memory_info(self, handle):
        # nvidia-smi (driver R510 on) shows the v2 figure, whose `used` leaves out the memory the driver reserves
        # (~500 MiB on an H100: measured, tests/gpu/check_nvml.py). v1's `used` counts it, so try v2 first.
        v2 = getattr(self._nvml, "nvmlMemory_v2", None)
        if v2 is not None and not self._memory_v1_only:
            mem = self.query("nvmlDeviceGetMemoryInfo", handle, version=v2)
            if mem is not None:
                return mem
            self._memory_v1_only = True  # an older driver without nvmlDeviceGetMemoryInfo_v2: stop asking
        return self.query("nvmlDeviceGetMemoryInfo", handle)

    def _read(self, device: dict) -> dict:
        h = device["handle"]
        util = self.query("nvmlDeviceGetUtilizationRates", h)
        mem = self._memory_info(h)
        temperature = self.query("nvmlDeviceGetTemperature", h, getattr(self._nvml, "NVML_TEMPERATURE_GPU", 0))
        power_mw = self.query("nvmlDeviceGetPowerUsage", h)
        energy_mj = self.query("nvmlDeviceGetTotalEnergyConsumption", h)
        reasons = self.query("nvmlDeviceGetCurrentClocksEventReasons", h)
        if reasons is None:
            reasons = self.query("nvmlDeviceGetCurrentClocksThrottleReasons", h)
        processes = self.query("nvmlDeviceGetComputeRunningProcesses", h, default=[]) or []
        return {
            "index": device["index"],
            "uuid": device["uuid"],
            "name": device["name"],
            "pci_bus_id": device["pci_bus_id"],
            "driver_version": self._driver,
            "utilization_ratio": util.gpu / 100.0 if util is not None else None,
            "memory_used_bytes": int(mem.used) if mem is not None else None,
            "memory_total_bytes": int(mem.total) if mem is not None else None,
            "temperature_celsius": float(temperature) if temperature is not None else None,
            "power_watts": power_mw / 1000.0 if power_mw is not None else None,
            "energy_joules": energy_mj / 1000.0 if energy_mj is not None else None,
            "throttle_reasons": (
                {label: bool(int(reasons) & bit) for bit, label in THROTTLE_REASONS.items()} if reasons is not None else None
            ),
            "processes": [
                {"pid": int(p.pid), "used_memory_bytes": _memory(getattr(p, "usedGpuMemory", None))} for p in processes
            ],
        }


def _memory(value) -> int | None:
    # NVML reports "not available" (Windows WDDM, MIG) as None or as NVML_VALUE_NOT_AVAILABLE (2**64 - 1)
    if value is None or value >= 2**63:
        return None
    return int(value)
