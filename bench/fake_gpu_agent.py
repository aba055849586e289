"""`trainwarden watch`, with N fake GPUs (tests/fake_pynvml.py) in place of NVML: what the load benchmarks run in a
child process, so its CPU time and memory are its own. Stops on SIGTERM / SIGINT. ENCODER `library` serves
/metrics with prometheus_client's own encoder instead of the agent's (outputs/exposition.py), to compare them.

    .venv/bin/python bench/fake_gpu_agent.py ROOT PORT GPUS [fast|library]
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))

import fake_pynvml  # noqa: E402
from prometheus_client.exposition import choose_encoder  # noqa: E402

from trainwarden.app.agent import Agent  # noqa: E402
from trainwarden.ingest.host.nvml import Nvml  # noqa: E402
from trainwarden.ingest.host.sources import HostSources  # noqa: E402


def main() -> int:
    root, port, n_gpus = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    encoder = sys.argv[4] if len(sys.argv) > 4 else "fast"
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gpus = fake_pynvml.gpus(n_gpus)
    for k, g in enumerate(gpus):
        g.processes = [(100_000 + 4 * k + j, 2**30) for j in range(4)]  # processes of nobody: looked up, not matched
    module = fake_pynvml.make(gpus)
    # the shipped defaults of `trainwarden watch` (poll 0.5 s, rediscovery 5 s, judged at least every 5 s, GPUs every 1 s)
    agent = Agent([root], "127.0.0.1", port, host_sources=HostSources(nvml=Nvml(loader=lambda: module)))
    if encoder == "library":
        agent.metrics.choose = choose_encoder
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.request_stop())
    agent.start()
    agent.wait()
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
