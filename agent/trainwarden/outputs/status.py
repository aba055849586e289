"""The status document (`status --json`, `/api/runs`): built here and only here, from snapshots and their
judgements, as a typed `StatusReport` (model/report.py); `to_json` writes it. docs/contracts/status-document.md
describes every field. Values not known are null, never invented; a logged nan/inf is null too, its key listed in
`nonfinite` (JSON has no NaN)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from trainwarden.judge.judge import judge, judge_host
from trainwarden.judge.policy import Policy, PolicySet, as_policy_set
from trainwarden.model import (
    EvaluationReport,
    GpuReport,
    GpuSample,
    HostPolicy,
    Judgement,
    LogReport,
    RunReport,
    RunSnapshot,
    StatusReport,
)
from trainwarden.model.codec import from_plain, to_plain

LOSS_RECENT_POINTS = 60


def run_report(snap: RunSnapshot, j: Judgement) -> RunReport:
    values = snap.values
    evaluations = tuple(
        EvaluationReport(e.mode, e.epoch, e.iteration, {**e.metrics, **dict.fromkeys(e.nonfinite)}, e.timestamp,
                         t.target, t.met)
        for e, t in zip(snap.evaluations, j.targets, strict=True)
    )
    return RunReport(
        run=snap.run, work_dir=snap.work_dir, framework=snap.framework, config=snap.config_file, state=j.state,
        history=j.history,
        epoch=snap.epoch, max_epochs=snap.max_epochs,
        epoch_iteration=snap.epoch_iteration,
        iterations_per_epoch=snap.iterations_per_epoch, iteration=snap.iteration, max_iterations=snap.max_iterations,
        progress_ratio=snap.progress_ratio, expected_completion_timestamp_seconds=snap.expected_completion_timestamp,
        loss=snap.loss, losses=snap.loss_components, accuracy_ratio=snap.accuracy_ratio,
        grad_norm=values.get("grad_norm"), learning_rate=snap.learning_rate, base_learning_rate=values.get("base_lr"),
        iteration_duration_seconds=values.get("time"), data_duration_seconds=values.get("data_time"),
        cuda_max_allocated_bytes=snap.cuda_max_allocated_bytes, batch_size=snap.config.batch_size,
        evaluator=snap.config.evaluator, last_train_timestamp_seconds=snap.last_train_timestamp,
        nonfinite=tuple(sorted(snap.nonfinite)), evaluations=evaluations, eval_key=j.eval_key, best=j.best,
        checkpoints=snap.checkpoints, newest_checkpoint=snap.newest_checkpoint, last_saved=snap.last_saved,
        early_stopping=snap.early_stopping, early_stopping_hook=dict(snap.config.early_stopping or {}),
        health=j.health, conditions=j.conditions, verdict=j.verdict.verdict, verdict_rule=j.verdict.rule,
        verdict_reasons=j.verdict.reasons, advice=j.advice, plan_b=j.verdict.plan_b, loss_trend=j.loss_trend,
        loss_history=j.loss_history,
        early_stop_analysis=j.early_stop, policy=j.policy, phase=snap.phase,
        loss_recent=tuple(p.values.get("loss") for p in snap.recent[-LOSS_RECENT_POINTS:]),
        stall_after_seconds=j.stall_seconds, start_timestamp_seconds=snap.first_timestamp,
        last_progress_timestamp_seconds=snap.last_progress_timestamp,
        log_last_write_timestamp_seconds=snap.log_last_write_timestamp,
        sessions=tuple(s.id for s in snap.sessions), attempts=snap.attempts,
        attempt_start_timestamp_seconds=snap.attempt_start_timestamp, resumes=snap.resumes, log_files=tuple(snap.log_files),
        log=LogReport(snap.counts.lines_total, snap.counts.parse_errors_total, snap.counts.decode_fallbacks_total,
                      snap.counts.errors_total, snap.counts.file_events_total, snap.recent_errors[-10:],
                      snap.last_error_timestamps),
        process=snap.process, versions=dict(snap.config.versions), gpus=j.gpus,
    )


def status_report(snapshots: list[RunSnapshot], policy: Policy | PolicySet, now: float,
                  gpus: Sequence[GpuSample | Mapping] = (), gpu_error: str | None = None) -> StatusReport:
    """Every run judged by its own policy, the GPUs (as NVML read them: samples or their plain form) with the
    runs that use them, and the GPUs' own conditions."""
    policies = as_policy_set(policy)
    gpus = [g if isinstance(g, GpuSample) else from_plain(GpuSample, g) for g in gpus]
    runs = tuple(run_report(s, judge(s, policies.for_run(s.run), now, gpus)) for s in snapshots)
    users: dict[int, list[str]] = {}
    for r in runs:
        for g in r.gpus:
            users.setdefault(g.index, []).append(r.run)
    host = judge_host(gpus, policies.default, now)
    return StatusReport(
        runs=runs, gpus=tuple(GpuReport(g, tuple(users.get(g.index, ()))) for g in gpus), conditions=host.conditions,
        policy=HostPolicy(host.gpu_temperature_max_celsius, host.gpu_memory_full_ratio), timestamp=now,
        gpu_error=gpu_error,
    )


def status_document(snapshots: list[RunSnapshot], policy: Policy | PolicySet, now: float,
                    gpus: Sequence[GpuSample | Mapping] = (), gpu_error: str | None = None) -> dict:
    """The status document as JSON-ready data, straight from snapshots."""
    return document(status_report(snapshots, policy, now, gpus, gpu_error))


def document(report: StatusReport) -> dict:
    """The report as JSON-ready data (what /api/runs serves)."""
    return to_plain(report)


def to_json(data) -> bytes:
    """UTF-8 JSON of a report (or of plain data). NaN never reaches it; allow_nan=False proves it."""
    plain = to_plain(data) if not isinstance(data, (dict, list)) else data
    return json.dumps(plain, allow_nan=False, ensure_ascii=False).encode("utf-8")
