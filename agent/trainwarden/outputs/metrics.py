"""Prometheus metrics, built at each scrape from the typed status report (a custom Collector on its own registry;
no global gauges). Names, types and labels: docs/contracts/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from trainwarden import __version__
from trainwarden.model import (
    ERROR_KINDS,
    FILE_EVENTS,
    VERDICTS,
    EvaluationReport,
    GpuSample,
    RunReport,
    RunState,
    Severity,
    StatusReport,
)

P = "trainwarden_"
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

    def add(self, family: Metric) -> None:
        self._by_name[family.name] = family

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._by_name.values())


def notifier_families(notifier) -> list[Metric]:
    """The notifier's counters and queue: the same families from the agent (standalone) and from the bridge."""
    sent = CounterMetricFamily(P + "notifications", "Notifications delivered, by severity.", labels=["severity"])
    failed = CounterMetricFamily(P + "notifications_failed", "Failed delivery attempts, by severity.", labels=["severity"])
    for severity in Severity:
        sent.add_metric([severity.value], notifier.sent.get(severity.value, 0))
        failed.add_metric([severity.value], notifier.failed.get(severity.value, 0))
    queue = GaugeMetricFamily(P + "notification_queue_length", "Notifications waiting in the outbox.", labels=[])
    queue.add_metric([], notifier.queue_length())
    errors = CounterMetricFamily(P + "notification_store_write_errors", "Writes of the outbox or alert state the disk "
                                 "refused (full, read-only); the messages are held in memory meanwhile.", labels=[])
    errors.add_metric([], notifier.store_write_errors)
    return [sent, failed, queue, errors]


# (metric name, RunReport attribute, help) for plain per-run gauges that are omitted when the value is unknown
_RUN_GAUGES = (
    ("run_start_timestamp_seconds", "start_timestamp_seconds", "First log line of the run's first session."),
    ("log_last_write_timestamp_seconds", "log_last_write_timestamp_seconds", "Last modification of the run's logs."),
    ("train_last_progress_timestamp_seconds", "last_progress_timestamp_seconds",
     "Time of the last train, validation or checkpoint line."),
    ("train_last_timestamp_seconds", "last_train_timestamp_seconds", "Time of the last train line."),
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


def add_run(f: _Families, run: RunReport) -> None:
    r = run.run
    f.gauge("run_info", "Run identity (always 1).", ["run", "work_dir", "framework", "config"]).add_metric(
        [r, run.work_dir, run.framework, run.config or ""], 1
    )
    states = f.gauge("run_state", "1 for the run's current state, 0 for the others.", ["run", "state"])
    for state in RunState:
        states.add_metric([r, state.value], 1 if run.state == state else 0)
    # every rule that pages skips a history run (`unless on(instance, job, run) trainwarden_run_history == 1`)
    f.gauge("run_history", "1 for a run already quiet for longer than policy.history_after_seconds when the agent first "
            "read it: shown and exported, never paged.", ["run"]).add_metric([r], 1 if run.history else 0)
    if run.health is not None:
        f.gauge("run_health", "0 green, 1 yellow, 2 red.", ["run"]).add_metric([r], run.health.level)
    if run.verdict:
        verdicts = f.gauge("run_verdict", "1 for the run's current verdict.", ["run", "verdict"])
        for v in VERDICTS:
            verdicts.add_metric([r, v], 1 if run.verdict == v else 0)
    for name, attribute, doc in _RUN_GAUGES:
        value = getattr(run, attribute)
        if value is not None:
            f.gauge(name, doc, ["run"]).add_metric([r], float(value))
    history = run.loss_history
    if history is not None and history.median is not None:
        f.gauge("train_loss_history_median", "Median of the run's logged losses before the latest (once enough are in).",
                ["run"]).add_metric([r], history.median)
    if history is not None and history.minimum is not None:
        f.gauge("train_loss_history_min", "The lowest logged loss before the latest.", ["run"]).add_metric(
            [r], history.minimum)
    loss = NAN if run.loss is None and "loss" in run.nonfinite else run.loss  # the log really says nan/inf
    if loss is not None:
        f.gauge("train_loss", "Total loss of the last logged window.", ["run"]).add_metric([r], loss)
    for name, value in sorted(run.losses.items()):
        f.gauge("train_loss_component", "Loss terms other than the total.", ["run", "component"]).add_metric(
            [r, name], NAN if value is None else value  # None here means the log wrote nan/inf
        )
    _add_evaluations(f, run)
    _add_checkpoints(f, run)
    es = run.early_stopping
    if es is not None and es.counter is not None:
        # promtool rejects "counter" in a gauge's name
        f.gauge("early_stopping_evaluations_without_improvement", "The early-stop counter: evaluations in a row "
                "without improvement.", ["run"]).add_metric([r], es.counter)
    if es is not None and es.patience is not None:
        f.gauge("early_stopping_patience", "Early-stop patience.", ["run"]).add_metric([r], es.patience)
    _add_process(f, run)
    log = run.log
    errors = f.counter("log_errors", "Error lines seen in the run's logs and consoles.", ["run", "kind"])
    for kind in ERROR_KINDS:
        errors.add_metric([r, kind], log.errors_total.get(kind, 0))
    for kind, ts in sorted(log.last_error_timestamps.items()):
        f.gauge("log_error_last_timestamp_seconds", "When the last error line of this kind was written.",
                ["run", "kind"]).add_metric([r, kind], ts)
    events = f.counter("log_file_events", "What happened to the run's files while read: rotated, truncated, re-created, "
                       "an over-long line skipped, a line decoded as GB18030.", ["run", "event"])
    for event in FILE_EVENTS:
        events.add_metric([r, event], log.file_events_total.get(event, 0))
    f.counter("log_lines", "Log lines parsed.", ["run"]).add_metric([r], log.lines_total)
    f.counter("log_parse_errors", "Log lines that could not be read (over-long lines).", ["run"]).add_metric(
        [r], log.parse_errors_total
    )
    active = sorted({(c.alert, c.severity.value) for c in run.conditions})  # one per alert, whatever labels
    for alert, severity in active:
        f.gauge("condition_active", "Conditions the agent's own evaluator finds active.",
                ["run", "alert", "severity"]).add_metric([r, alert, severity], 1)
    _add_policy(f, run)


def _add_evaluations(f: _Families, run: RunReport) -> None:
    r = run.run
    latest: dict[str, EvaluationReport] = {}
    for e in run.evaluations:
        latest[e.mode] = e
    metric = f.gauge("eval_metric", "Metrics of the latest validation and test.", ["run", "mode", "key"])
    for mode, e in sorted(latest.items()):
        for key, value in sorted(e.metrics.items()):
            metric.add_metric([r, mode, key], NAN if value is None else value)
    val = latest.get("val")
    if val is not None and val.epoch is not None:
        f.gauge("eval_epoch", "Epoch of the latest validation.", ["run"]).add_metric([r], val.epoch)
    if val is not None and val.timestamp is not None:
        f.gauge("eval_last_timestamp_seconds", "When the latest validation was logged.", ["run"]).add_metric(
            [r], val.timestamp)
    if val is not None and val.iteration is not None:
        f.gauge("eval_iteration", "Training iteration of the latest validation.", ["run"]).add_metric([r], val.iteration)
    if val is not None and val.target is not None and run.eval_key:
        f.gauge("eval_target", "Target for the latest evaluated epoch.", ["run", "key"]).add_metric(
            [r, run.eval_key], val.target)
    best = run.best
    if best is not None and best.value is not None:
        f.gauge("eval_best", "Best value of the evaluated metric so far.", ["run", "key"]).add_metric(
            [r, best.key], best.value
        )


def _add_checkpoints(f: _Families, run: RunReport) -> None:
    r = run.run
    files = run.checkpoints
    # promtool rejects a "_count" suffix outside histograms and summaries
    f.gauge("checkpoint_files", "Checkpoint files in the work dir.", ["run"]).add_metric([r], len(files))
    saved = run.last_saved
    newest = max((c.mtime for c in files), default=None) or (saved.timestamp if saved else None)
    if newest is not None:
        f.gauge("checkpoint_last_timestamp_seconds", "When the newest checkpoint was written.", ["run"]).add_metric(
            [r], newest
        )
    epochs = [c.epoch for c in files if c.epoch is not None and not c.best]
    if not epochs and saved is not None and saved.unit == "epoch":
        epochs = [saved.number]
    if epochs:
        f.gauge("checkpoint_last_epoch", "Epoch of the newest regular checkpoint.", ["run"]).add_metric(
            [r], max(epochs)
        )


# (metric, PolicyView attribute, help): the thresholds the Prometheus rules compare against
_POLICY_GAUGES = (
    ("policy_loss_max", "loss_max", "Loss above this is an explosion (red), once the run had been at or below it."),
    ("policy_loss_explosion_factor", "loss_explosion_factor",
     "Loss above this many times the run's own median (train_loss_history_median) is an explosion (red)."),
    ("policy_loss_rise_ratio", "loss_rise_ratio", "Short-term loss rise above this ratio is yellow."),
    ("policy_accuracy_min_ratio", "accuracy_min_ratio", "Accuracy below this is yellow."),
    ("policy_grad_norm_max", "grad_norm_max", "Gradient norm above this is yellow."),
    ("policy_learning_rate_min", "learning_rate_min", "Learning rate below this has collapsed."),
    ("policy_stall_seconds", "stall_seconds", "No progress for this long is a stall (the run's own pace)."),
    ("policy_evaluation_news_seconds", "evaluation_news_seconds", "A validation is news for this long."),
)


def _add_policy(f: _Families, run: RunReport) -> None:
    r = run.run
    policy = run.policy
    if policy is None:
        return
    for name, attribute, doc in _POLICY_GAUGES:
        value = getattr(policy, attribute)
        if value is not None:  # a setting that is off has no series: the rule comparing against it cannot fire
            f.gauge(name, doc, ["run"]).add_metric([r], value)
    if policy.goal is not None and run.eval_key:
        f.gauge("policy_target", "The final goal of the evaluated metric.", ["run", "key"]).add_metric(
            [r, run.eval_key], policy.goal)
        for name, value in sorted(policy.baselines.items()):
            f.gauge("policy_baseline", "A baseline of the evaluated metric to compare with.", ["run", "key", "baseline"]
                    ).add_metric([r, run.eval_key, name], value)
    if policy.loss_range:
        band = f.gauge("policy_loss_healthy", "The healthy range of the total loss.", ["run", "bound"])
        band.add_metric([r, "low"], policy.loss_range[0])
        band.add_metric([r, "high"], policy.loss_range[1])


def _add_process(f: _Families, run: RunReport) -> None:
    r = run.run
    process = run.process
    if process is None:
        return  # never seen: judged by the log alone, no process_up at all
    f.gauge("process_up", "1 while the training process runs.", ["run"]).add_metric([r], 1 if process.up else 0)
    if process.start_timestamp_seconds is not None:
        f.gauge("process_start_timestamp_seconds", "When the training process started.", ["run"]).add_metric(
            [r], process.start_timestamp_seconds)
    if process.end_timestamp_seconds is not None:
        f.gauge("process_end_timestamp_seconds", "When the training process was seen to end.", ["run"]).add_metric(
            [r], process.end_timestamp_seconds)
    if process.exit_code is not None:
        f.gauge("process_exit_code", "Exit code of the ended training process (when known).", ["run"]).add_metric(
            [r], process.exit_code)
    for gpu in run.gpus:
        labels = [r, str(gpu.index), gpu.uuid]
        f.gauge("gpu_run_info", "1 where the run's processes use the GPU.", ["run", "gpu", "uuid"]).add_metric(labels, 1)
        if gpu.memory_used_bytes is not None:
            f.gauge("run_gpu_memory_used_bytes", "GPU memory used by the run's processes.", ["run", "gpu", "uuid"]).add_metric(
                labels, gpu.memory_used_bytes)


_GPU_GAUGES = (
    ("gpu_utilization_ratio", "utilization_ratio", "GPU busy time over the last sample period (0-1)."),
    ("gpu_memory_used_bytes", "memory_used_bytes", "GPU memory in use."),
    ("gpu_memory_total_bytes", "memory_total_bytes", "GPU memory installed."),
    ("gpu_temperature_celsius", "temperature_celsius", "GPU core temperature."),
    ("gpu_power_watts", "power_watts", "GPU power draw."),
)


def add_gpu(f: _Families, gpu: GpuSample) -> None:
    labels = [str(gpu.index), gpu.uuid]
    f.gauge("gpu_info", "GPU identity (always 1).", ["gpu", "uuid", "name", "driver_version", "pci_bus_id"]).add_metric(
        [*labels, gpu.name or "", gpu.driver_version or "", gpu.pci_bus_id or ""], 1)
    for name, attribute, doc in _GPU_GAUGES:
        value = getattr(gpu, attribute)
        if value is not None:  # unsupported fields are omitted, never 0
            f.gauge(name, doc, ["gpu", "uuid"]).add_metric(labels, value)
    if gpu.energy_joules is not None:
        f.counter("gpu_energy_joules", "Energy used since the driver loaded.", ["gpu", "uuid"]).add_metric(
            labels, gpu.energy_joules)
    for reason, active in sorted(gpu.throttle_reasons.items()):
        f.gauge("gpu_throttle_active", "1 while the clocks are held down for this reason.", ["gpu", "uuid", "reason"]
                ).add_metric([*labels, reason], 1 if active else 0)


class StatusCollector(Collector):
    """Families for every run and for the agent itself, from `source()` called at scrape time."""

    def __init__(self, source: Callable[[], StatusReport], stats: CollectorStats) -> None:
        self.source = source
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        f = _Families()
        f.gauge("build_info", "trainwarden version (always 1).", ["version"]).add_metric([__version__], 1)
        report = self.source()
        for run in report.runs:
            add_run(f, run)
        for gpu in report.gpus:
            add_gpu(f, gpu.gpu)
        host = report.policy
        if host.gpu_temperature_max_celsius is not None:
            f.gauge("policy_gpu_temperature_max_celsius", "GPU temperature at or above this is yellow.", []).add_metric(
                [], host.gpu_temperature_max_celsius)
        if host.gpu_memory_full_ratio is not None:
            f.gauge("policy_gpu_memory_full_ratio", "GPU memory use at or above this ratio is yellow.", []).add_metric(
                [], host.gpu_memory_full_ratio)
        success = f.gauge("collector_success", "1 if the collector's last run succeeded.", ["collector"])
        duration = f.gauge("collector_duration_seconds", "Duration of the collector's last run.", ["collector"])
        for name, ok in sorted(self.stats.success.items()):
            success.add_metric([name], 1 if ok else 0)
            duration.add_metric([name], self.stats.duration_seconds.get(name, 0.0))
        f.counter("file_events_dropped", "File events the read loop's queue had no room for; a walk of every root "
                  "follows.", []).add_metric([], self.stats.file_events_dropped)
        if self.stats.notifier is not None:
            for family in notifier_families(self.stats.notifier):
                f.add(family)
        yield from f


def make_registry(source: Callable[[], StatusReport], stats: CollectorStats) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(source, stats))
    return registry
