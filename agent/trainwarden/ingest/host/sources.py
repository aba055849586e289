"""The host side of every run: its training process (psutil) and the GPUs (NVML), joined to the fleet's runs."""

from __future__ import annotations

from trainwarden.ingest.fleet import Fleet
from trainwarden.ingest.host.nvml import GpuReading, Nvml
from trainwarden.ingest.host.process import ProcessTracker, RunTarget


class HostSources:
    def __init__(self, pids: dict[str, int] | None = None, nvml: Nvml | None = None,
                 tracker: ProcessTracker | None = None) -> None:
        self.pids = pids or {}  # run name -> PID given in the config file
        self.nvml = nvml if nvml is not None else Nvml()
        self.tracker = tracker if tracker is not None else ProcessTracker()

    def targets(self, fleet: Fleet) -> list[RunTarget]:
        out = []
        for reader in fleet.current_readers():
            layout = reader.layout
            out.append(RunTarget(
                run=reader.state.name,
                work_dir=reader.work_dir,
                logs=[s.log for s in layout.sessions if s.log is not None],
                config_name=layout.config_file.name if layout.config_file else None,
                pid=self.pids.get(reader.state.name),
                configured_work_dir=reader.state.config.work_dir,  # where the trainer was told to write, as written
            ))
        return out

    def update_processes(self, fleet: Fleet, discover: bool) -> bool:
        """Find processes (when `discover`), notice ended ones, and hand each run its process document."""
        if discover:
            self.tracker.discover(self.targets(fleet))
        changed = self.tracker.check(refresh_descendants=discover)
        for reader in fleet.current_readers():
            reader.state.set_process(self.tracker.document(reader.state.name))
        return changed

    def sample_gpus(self) -> GpuReading:
        return self.nvml.sample()

    def close(self) -> None:
        self.nvml.close()
