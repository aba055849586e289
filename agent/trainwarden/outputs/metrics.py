"""Prometheus metrics, built fresh at each scrape from the status document (a custom Collector on its own
registry; no global gauges). Names and labels: DESIGN.md section 3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from trainwarden import __version__
from trainwarden.judge.lifecycle import STATES
from trainwarden.model import ERROR_KINDS

P = "trainwarden_"
HEALTH_VALUES = {"green": 0, "yellow": 1, "red": 2}
VERDICTS = ("in_progress", "success", "stable", "partial", "stagnant", "degraded", "failed")
NAN = float("nan")


@dataclass
class CollectorStats:
    """How the agent's own collectors fared: filled by the wiring, read at scrape time."""

    success: dict[str, bool] = field(default_factory=dict)
    duration_seconds: dict[str, float] = field(default_factory=dict)
    notifier: object | None = None  # the standalone notifier: counters and queue length
    file_events_dropped: int = 0  # file events the read loop's queue had no room for (a full rediscovery follows)


class _Families:
    """Creates families on first use, so one with no samples is never exposed half-declared."""

    def __init__(self) -> None:
        self._by_name: dict[str, Metric] = {}

    def gauge(self, name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        fam = self._by_name.get(name)
        if fam is None:
            fam = self._by_name[name] = GaugeMetricFamily(P + name, doc, labels=labels)
        return fam

    def counter(self, name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
        fam = self._by_name.get(name)
        if fam is None:
            fam = self._by_name[name] = CounterMetricFamily(P + name, doc, labels=labels)
        return fam

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._by_name.values())


# (metric name, document key, help) for plain per-run gauges that are omitted when the value is unknown
_RUN_GAUGES = (
    ("run_start_timestamp_seconds", "start_timestamp_seconds", "First log line of the run's first session."),
    ("log_last_write_timestamp_seconds", "log_last_write_timestamp_seconds", "Last modification of the run's logs."),
    ("train_last_progress_timestamp_seconds", "last_progress_timestamp_seconds",
     "Time of the last train, validation or checkpoint line."),
    ("train_epoch", "epoch", "Current epoch (1-based)."),
    ("train_max_epochs", "max_epochs", "Epochs planned."),
    ("train_iteration", "iteration", "Iterations done since the start of training, across epochs."),
    ("train_max_iterations", "max_iterations", "Iterations planned."),
    ("train_progress_ratio", "progress_ratio", "iteration / max_iterations."),
    ("train_expected_completion_timestamp_seconds", "expected_completion_timestamp_seconds",
     "When training is expected to end, from the logged eta."),
    ("train_accuracy_ratio", "accuracy_ratio", "Classification accuracy of the last logged window (0-1)."),
    ("train_grad_norm", "grad_norm", "Gradient norm of the last logged window."),
    ("train_learning_rate", "learning_rate", "Learning rate of the last logged iteration."),
    ("train_iteration_duration_seconds", "iteration_duration_seconds", "Mean time per iteration (logged window)."),
    ("train_data_duration_seconds", "data_duration_seconds", "Mean data loading time per iteration."),
    ("train_cuda_max_allocated_bytes", "cuda_max_allocated_bytes", "torch.cuda.max_memory_allocated, logged."),
)


def _value_or_nan(run: dict, key: str, nonfinite_key: str) -> float | None:
    value = run.get(key)
    if value is None and nonfinite_key in run.get("nonfinite", ()):
        return NAN  # the log really says nan/inf: export it, an alert rule can see it
    return value


def add_run(f: _Families, run: dict) -> None:
    r = run["run"]
    f.gauge("run_info", "Run identity (always 1).", ["run", "work_dir", "framework", "config"]).add_metric(
        [r, run["work_dir"], run["framework"], run.get("config") or ""], 1
    )
    states = f.gauge("run_state", "1 for the run's current state, 0 for the others.", ["run", "state"])
    for state in STATES:
        states.add_metric([r, state], 1 if run["state"] == state else 0)
    if run.get("health") in HEALTH_VALUES:
        f.gauge("run_health", "0 green, 1 yellow, 2 red.", ["run"]).add_metric([r], HEALTH_VALUES[run["health"]])
    if run.get("verdict"):
        verdicts = f.gauge("run_verdict", "1 for the run's current verdict.", ["run", "verdict"])
        for v in VERDICTS:
            verdicts.add_metric([r, v], 1 if run["verdict"] == v else 0)
    for name, key, doc in _RUN_GAUGES:
        if run.get(key) is not None:
            f.gauge(name, doc, ["run"]).add_metric([r], float(run[key]))
    loss = _value_or_nan(run, "loss", "loss")
    if loss is not None:
        f.gauge("train_loss", "Total loss of the last logged window.", ["run"]).add_metric([r], loss)
    for name, value in sorted(run.get("losses", {}).items()):
        f.gauge("train_loss_component", "Loss terms other than the total.", ["run", "component"]).add_metric(
            [r, name], NAN if value is None else value  # None here means the log wrote nan/inf
        )
    _add_evaluations(f, run)
    _add_checkpoints(f, run)
    es = run.get("early_stopping") or {}
    if es.get("counter") is not None:
        # DESIGN.md named this early_stopping_counter; promtool rejects "counter" in a gauge's name
        f.gauge("early_stopping_evaluations_without_improvement", "The early-stop counter: evaluations in a row "
                "without improvement.", ["run"]).add_metric(
            [r], es["counter"]
        )
    if es.get("patience") is not None:
        f.gauge("early_stopping_patience", "Early-stop patience.", ["run"]).add_metric([r], es["patience"])
    _add_process(f, run)
    log = run["log"]
    errors = f.counter("log_errors", "Error lines seen in the run's logs and consoles.", ["run", "kind"])
    for kind in ERROR_KINDS:
        errors.add_metric([r, kind], log["errors_total"].get(kind, 0))
    for kind, ts in sorted((log.get("last_error_timestamps") or {}).items()):
        f.gauge("log_error_last_timestamp_seconds", "When the last error line of this kind was written.",
                ["run", "kind"]).add_metric([r, kind], ts)
    f.counter("log_lines", "Log lines parsed.", ["run"]).add_metric([r], log["lines_total"])
    f.counter("log_parse_errors", "Log lines that could not be read (over-long lines).", ["run"]).add_metric(
        [r], log["parse_errors_total"]
    )
    active = sorted({(c["alert"], c["severity"]) for c in run.get("conditions") or []})  # one per alert, whatever labels
    for alert, severity in active:
        f.gauge("condition_active", "Conditions the agent's own evaluator finds active.",
                ["run", "alert", "severity"]).add_metric([r, alert, severity], 1)
    _add_policy(f, run)


def _add_evaluations(f: _Families, run: dict) -> None:
    r = run["run"]
    latest: dict[str, dict] = {}
    for e in run["evaluations"]:
        latest[e["mode"]] = e
    metric = f.gauge("eval_metric", "Metrics of the latest validation and test.", ["run", "mode", "key"])
    for mode, e in sorted(latest.items()):
        for key, value in sorted(e["metrics"].items()):
            metric.add_metric([r, mode, key], NAN if value is None else value)
    val = latest.get("val")
    if val and val.get("epoch") is not None:
        f.gauge("eval_epoch", "Epoch of the latest validation.", ["run"]).add_metric([r], val["epoch"])
    if val and val.get("iteration") is not None:
        f.gauge("eval_iteration", "Training iteration of the latest validation.", ["run"]).add_metric(
            [r], val["iteration"]
        )
    targets = [(e["target"], run.get("eval_key")) for e in [val] if e and e.get("target") is not None]
    for target, key in targets:
        f.gauge("eval_target", "Target for the latest evaluated epoch.", ["run", "key"]).add_metric([r, key], target)
    best = run.get("best")
    if best and best.get("value") is not None:
        f.gauge("eval_best", "Best value of the evaluated metric so far.", ["run", "key"]).add_metric(
            [r, best["key"]], best["value"]
        )


def _add_checkpoints(f: _Families, run: dict) -> None:
    r = run["run"]
    files = run["checkpoints"]
    # DESIGN.md named this checkpoint_count; promtool rejects a "_count" suffix outside histograms and summaries
    f.gauge("checkpoint_files", "Checkpoint files in the work dir.", ["run"]).add_metric([r], len(files))
    saved = run.get("last_saved") or {}
    newest = max((c["mtime"] for c in files), default=None) or saved.get("timestamp")
    if newest is not None:
        f.gauge("checkpoint_last_timestamp_seconds", "When the newest checkpoint was written.", ["run"]).add_metric(
            [r], newest
        )
    epochs = [c["epoch"] for c in files if c["epoch"] is not None and not c["best"]]
    if not epochs and saved.get("unit") == "epoch":
        epochs = [saved["number"]]
    if epochs:
        f.gauge("checkpoint_last_epoch", "Epoch of the newest regular checkpoint.", ["run"]).add_metric(
            [r], max(epochs)
        )


# (metric, key of the run's `policy`, help): the thresholds the Prometheus rules compare against
_POLICY_GAUGES = (
    ("policy_loss_max", "loss_max", "Loss above this is an explosion (red)."),
    ("policy_loss_rise_ratio", "loss_rise_ratio", "Short-term loss rise above this ratio is yellow."),
    ("policy_accuracy_min_ratio", "accuracy_min_ratio", "Accuracy below this is yellow."),
    ("policy_grad_norm_max", "grad_norm_max", "Gradient norm above this is yellow."),
    ("policy_learning_rate_min", "learning_rate_min", "Learning rate below this has collapsed."),
    ("policy_stall_seconds", "stall_seconds", "No progress for this long is a stall (the run's own pace)."),
)


def _add_policy(f: _Families, run: dict) -> None:
    r = run["run"]
    policy = run.get("policy") or {}
    for name, key, doc in _POLICY_GAUGES:
        if policy.get(key) is not None:
            f.gauge(name, doc, ["run"]).add_metric([r], policy[key])
    if policy.get("goal") is not None and run.get("eval_key"):
        f.gauge("policy_target", "The final goal of the evaluated metric.", ["run", "key"]).add_metric(
            [r, run["eval_key"]], policy["goal"])
        for name, value in sorted((policy.get("baselines") or {}).items()):
            f.gauge("policy_baseline", "A baseline of the evaluated metric to compare with.", ["run", "key", "baseline"]
                    ).add_metric([r, run["eval_key"], name], value)
    if policy.get("loss_range"):
        band = f.gauge("policy_loss_healthy", "The healthy range of the total loss.", ["run", "bound"])
        band.add_metric([r, "low"], policy["loss_range"][0])
        band.add_metric([r, "high"], policy["loss_range"][1])


def _add_process(f: _Families, run: dict) -> None:
    r = run["run"]
    process = run.get("process")
    if not process:
        return  # never seen: judged by the log alone, no process_up at all
    f.gauge("process_up", "1 while the training process runs.", ["run"]).add_metric([r], 1 if process["up"] else 0)
    if process.get("start_timestamp_seconds") is not None:
        f.gauge("process_start_timestamp_seconds", "When the training process started.", ["run"]).add_metric(
            [r], process["start_timestamp_seconds"])
    if process.get("end_timestamp_seconds") is not None:
        f.gauge("process_end_timestamp_seconds", "When the training process was seen to end.", ["run"]).add_metric(
            [r], process["end_timestamp_seconds"])
    if process.get("exit_code") is not None:
        f.gauge("process_exit_code", "Exit code of the ended training process (when known).", ["run"]).add_metric(
            [r], process["exit_code"])
    for gpu in run.get("gpus") or []:
        labels = [r, str(gpu["index"]), gpu["uuid"]]
        f.gauge("gpu_run_info", "1 where the run's processes use the GPU.", ["run", "gpu", "uuid"]).add_metric(labels, 1)
        if gpu.get("memory_used_bytes") is not None:
            f.gauge("run_gpu_memory_used_bytes", "GPU memory used by the run's processes.", ["run", "gpu", "uuid"]).add_metric(
                labels, gpu["memory_used_bytes"])


_GPU_GAUGES = (
    ("gpu_utilization_ratio", "utilization_ratio", "GPU busy time over the last sample period (0-1)."),
    ("gpu_memory_used_bytes", "memory_used_bytes", "GPU memory in use."),
    ("gpu_memory_total_bytes", "memory_total_bytes", "GPU memory installed."),
    ("gpu_temperature_celsius", "temperature_celsius", "GPU core temperature."),
    ("gpu_power_watts", "power_watts", "GPU power draw."),
)


def add_gpu(f: _Families, gpu: dict) -> None:
    labels = [str(gpu["index"]), gpu["uuid"]]
    f.gauge("gpu_info", "GPU identity (always 1).", ["gpu", "uuid", "name", "driver_version", "pci_bus_id"]).add_metric(
        [*labels, gpu.get("name") or "", gpu.get("driver_version") or "", gpu.get("pci_bus_id") or ""], 1)
    for name, key, doc in _GPU_GAUGES:
        if gpu.get(key) is not None:  # unsupported fields are omitted, never 0
            f.gauge(name, doc, ["gpu", "uuid"]).add_metric(labels, gpu[key])
    if gpu.get("energy_joules") is not None:
        f.counter("gpu_energy_joules", "Energy used since the driver loaded.", ["gpu", "uuid"]).add_metric(
            labels, gpu["energy_joules"])
    for reason, active in sorted((gpu.get("throttle_reasons") or {}).items()):
        f.gauge("gpu_throttle_active", "1 while the clocks are held down for this reason.", ["gpu", "uuid", "reason"]
                ).add_metric([*labels, reason], 1 if active else 0)


class StatusCollector(Collector):
    """Families for every run and for the agent itself, from `source()` called at scrape time."""

    def __init__(self, source: Callable[[], dict], stats: CollectorStats) -> None:
        self.source = source
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        f = _Families()
        f.gauge("build_info", "trainwarden version (always 1).", ["version"]).add_metric([__version__], 1)
        doc = self.source()
        for run in doc["runs"]:
            add_run(f, run)
        for gpu in doc.get("gpus") or []:
            add_gpu(f, gpu)
        for name, key, help_text in (
            ("policy_gpu_temperature_max_celsius", "gpu_temperature_max_celsius", "GPU temperature at or above this is yellow."),
            ("policy_gpu_memory_full_ratio", "gpu_memory_full_ratio", "GPU memory use at or above this ratio is yellow."),
        ):
            if (doc.get("policy") or {}).get(key) is not None:
                f.gauge(name, help_text, []).add_metric([], doc["policy"][key])
        success = f.gauge("collector_success", "1 if the collector's last run succeeded.", ["collector"])
        duration = f.gauge("collector_duration_seconds", "Duration of the collector's last run.", ["collector"])
        for name, ok in sorted(self.stats.success.items()):
            success.add_metric([name], 1 if ok else 0)
            duration.add_metric([name], self.stats.duration_seconds.get(name, 0.0))
        notifier = self.stats.notifier
        if notifier is not None:
            sent = f.counter("notifications", "Notifications delivered, by severity.", ["severity"])
            failed = f.counter("notifications_failed", "Failed delivery attempts, by severity.", ["severity"])
            for severity in ("critical", "warning", "info"):
                sent.add_metric([severity], notifier.sent.get(severity, 0))
                failed.add_metric([severity], notifier.failed.get(severity, 0))
            f.gauge("notification_queue_length", "Notifications waiting in the outbox.", []).add_metric(
                [], notifier.queue_length())
            f.counter("notification_store_write_errors", "Writes of the outbox or alert state the disk refused "
                      "(full, read-only); the messages are held in memory meanwhile.", []).add_metric(
                [], notifier.store_write_errors)
        yield from f


def make_registry(source: Callable[[], dict], stats: CollectorStats) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(source, stats))
    return registry
