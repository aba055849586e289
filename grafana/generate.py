"""Writes grafana/dashboards/*.json (committed) from the compact definitions below: Fleet, Run and GPU.

Stable uids, the provisioned Prometheus datasource (uid trainwarden-prometheus), no __inputs, template variables
for instance and run. Thresholds are never typed in: the healthy bands, targets and limits are the agent's
trainwarden_policy_* series drawn as lines. Run: python grafana/generate.py
"""

from __future__ import annotations

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "trainwarden-prometheus"}
SEL = 'instance=~"$instance"'
RUN = 'instance=~"$instance", run=~"$run"'


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False, fmt: str = "time_series") -> dict:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "instant": instant,
            "range": not instant, "format": fmt}


def panel(pid: int, title: str, kind: str, targets: list[dict], grid: tuple[int, int, int, int], unit: str = "",
          description: str = "", overrides: list | None = None, options: dict | None = None,
          mappings: list | None = None, thresholds: list | None = None, decimals: int | None = None) -> dict:
    x, y, w, h = grid
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    defaults: dict = {"unit": unit} if unit else {}
    if mappings:
        defaults["mappings"] = mappings
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
        defaults["color"] = {"mode": "thresholds"}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"id": pid, "title": title, "type": kind, "datasource": DS, "description": description,
            "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []}, "options": options or {}}


def dashed(name: str, color: str) -> dict:
    return {"matcher": {"id": "byRegexp", "options": name},
            "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                           {"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]}


HEALTH = [{"type": "value", "options": {"0": {"text": "green", "color": "green"}, "1": {"text": "yellow", "color": "yellow"},
                                        "2": {"text": "red", "color": "red"}}}]
GYR = [{"color": "green", "value": None}, {"color": "yellow", "value": 1}, {"color": "red", "value": 2}]


def variables(with_run: bool) -> dict:
    out = [{"name": "instance", "label": "host", "type": "query", "datasource": DS, "multi": True, "includeAll": True,
            "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1,
            "query": {"query": "label_values(trainwarden_build_info, instance)", "refId": "instance"},
            "definition": "label_values(trainwarden_build_info, instance)"}]
    if with_run:
        q = f"label_values(trainwarden_run_info{{{SEL}}}, run)"
        out.append({"name": "run", "label": "run", "type": "query", "datasource": DS, "multi": True, "includeAll": True,
                    "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1,
                    "query": {"query": q, "refId": "run"}, "definition": q})
    return {"list": out}


def dashboard(uid: str, title: str, panels: list[dict], with_run: bool, links: list | None = None) -> dict:
    return {
        "uid": uid, "title": title, "tags": ["trainwarden"], "timezone": "browser", "schemaVersion": 41,
        "editable": True, "graphTooltip": 1, "refresh": "30s", "time": {"from": "now-24h", "to": "now"},
        "templating": variables(with_run), "panels": panels, "links": links or [],
        "annotations": {"list": [{
            "name": "trainwarden alerts", "datasource": DS, "enable": True, "iconColor": "red",
            "expr": f'ALERTS{{alertstate="firing", {SEL}}}', "titleFormat": "{{alertname}}", "textFormat": "{{run}}",
            "step": "60s"}]},
    }


def fleet() -> dict:
    p = [
        panel(1, "Runs: health", "stat", [target(f"trainwarden_run_health{{{SEL}}}", "{{instance}} {{run}}", instant=True)],
              (0, 0, 24, 4), mappings=HEALTH, thresholds=GYR,
              description="Green / yellow / red by the user's guide (the agent's evaluation)."),
        panel(2, "Progress", "bargauge", [target(f"trainwarden_train_progress_ratio{{{SEL}}}", "{{instance}} {{run}}",
                                                 instant=True)], (0, 4, 12, 8), unit="percentunit"),
        panel(3, "Expected end", "table", [target(f"trainwarden_train_expected_completion_timestamp_seconds{{{SEL}}} * 1000",
                                                  "{{run}}", instant=True, fmt="table")], (12, 4, 12, 8), unit="dateTimeFromNow"),
        panel(4, "State and verdict", "table", [
            target(f"trainwarden_run_state{{{SEL}}} == 1", "{{run}} {{state}}", instant=True, fmt="table"),
            target(f"trainwarden_run_verdict{{{SEL}}} == 1", "{{run}} {{verdict}}", instant=True, fmt="table")],
            (0, 12, 12, 8)),
        panel(5, "Active conditions", "table", [target(f"trainwarden_condition_active{{{SEL}}} == 1",
                                                       "{{run}} {{alert}}", instant=True, fmt="table")], (12, 12, 12, 8)),
        panel(6, "Loss", "timeseries", [target(f"trainwarden_train_loss{{{SEL}}}", "{{instance}} {{run}}")], (0, 20, 12, 8)),
        panel(7, "GPU temperature", "timeseries", [
            target(f"trainwarden_gpu_temperature_celsius{{{SEL}}}", "{{instance}} GPU {{gpu}}"),
            target(f"trainwarden_policy_gpu_temperature_max_celsius{{{SEL}}}", "limit {{instance}}")],
            (12, 20, 12, 8), unit="celsius", overrides=[dashed("limit.*", "red")]),
        panel(8, "GPU utilization", "timeseries", [target(f"trainwarden_gpu_utilization_ratio{{{SEL}}}",
                                                          "{{instance}} GPU {{gpu}}")], (0, 28, 24, 7), unit="percentunit"),
    ]
    links = [{"title": "Run", "type": "link", "url": "/d/trainwarden-run"}, {"title": "GPUs", "type": "link",
                                                                            "url": "/d/trainwarden-gpu"}]
    return dashboard("trainwarden-fleet", "trainwarden / Fleet", p, with_run=False, links=links)


def run() -> dict:
    p = [
        panel(1, "Loss, with the healthy band", "timeseries", [
            target(f"trainwarden_train_loss{{{RUN}}}", "{{run}} loss"),
            target(f"trainwarden_policy_loss_healthy{{{RUN}}}", "{{run}} healthy {{bound}}"),
            target(f"trainwarden_policy_loss_max{{{RUN}}}", "{{run}} explosion")],
            (0, 0, 12, 9), overrides=[dashed(".*healthy.*", "green"), dashed(".*explosion", "red")]),
        panel(2, "Loss components", "timeseries", [target(f"trainwarden_train_loss_component{{{RUN}}}",
                                                          "{{run}} {{component}}")], (12, 0, 12, 9)),
        panel(3, "Accuracy", "timeseries", [
            target(f"trainwarden_train_accuracy_ratio{{{RUN}}}", "{{run}} acc"),
            target(f"trainwarden_policy_accuracy_min_ratio{{{RUN}}}", "{{run}} minimum")],
            (0, 9, 8, 8), unit="percentunit", overrides=[dashed(".*minimum", "red")]),
        panel(4, "Gradient norm", "timeseries", [
            target(f"trainwarden_train_grad_norm{{{RUN}}}", "{{run}} grad_norm"),
            target(f"trainwarden_policy_grad_norm_max{{{RUN}}}", "{{run}} maximum")],
            (8, 9, 8, 8), overrides=[dashed(".*maximum", "red")]),
        panel(5, "Learning rate", "timeseries", [
            target(f"trainwarden_train_learning_rate{{{RUN}}}", "{{run}} lr"),
            target(f"trainwarden_policy_learning_rate_min{{{RUN}}}", "{{run}} collapsed below")],
            (16, 9, 8, 8), overrides=[dashed(".*collapsed below", "orange")]),
        panel(6, "Evaluated metric per epoch, against the target and the baselines", "timeseries", [
            target(f'trainwarden_eval_metric{{mode="val", {RUN}}}', "{{run}} {{key}}"),
            target(f"trainwarden_eval_target{{{RUN}}}", "{{run}} target this epoch"),
            target(f"trainwarden_policy_target{{{RUN}}}", "{{run}} goal"),
            target(f"trainwarden_policy_baseline{{{RUN}}}", "{{run}} baseline: {{baseline}}")],
            (0, 17, 16, 9), overrides=[dashed(".*target this epoch", "yellow"), dashed(".*goal", "green"),
                                       dashed(".*baseline.*", "purple")]),
        panel(7, "Early-stop counter", "timeseries", [
            target(f"trainwarden_early_stopping_evaluations_without_improvement{{{RUN}}}", "{{run}} counter"),
            target(f"trainwarden_early_stopping_patience{{{RUN}}}", "{{run}} patience")],
            (16, 17, 8, 9), overrides=[dashed(".*patience", "red")]),
        panel(8, "Checkpoints", "stat", [
            target(f"trainwarden_checkpoint_files{{{RUN}}}", "{{run}} files", instant=True),
            target(f"trainwarden_checkpoint_last_epoch{{{RUN}}}", "{{run}} newest epoch", instant=True)],
            (0, 26, 8, 5)),
        panel(9, "Epoch and iteration", "stat", [
            target(f"trainwarden_train_epoch{{{RUN}}}", "{{run}} epoch", instant=True),
            target(f"trainwarden_train_progress_ratio{{{RUN}}}", "{{run}} progress", instant=True)],
            (8, 26, 8, 5)),
        panel(10, "Iteration time", "timeseries", [
            target(f"trainwarden_train_iteration_duration_seconds{{{RUN}}}", "{{run}} iteration"),
            target(f"trainwarden_train_data_duration_seconds{{{RUN}}}", "{{run}} data")], (16, 26, 8, 5), unit="s"),
    ]
    return dashboard("trainwarden-run", "trainwarden / Run", p, with_run=True)


def gpu() -> dict:
    p = [
        panel(1, "Utilization", "timeseries", [target(f"trainwarden_gpu_utilization_ratio{{{SEL}}}", "{{instance}} GPU {{gpu}}")],
              (0, 0, 12, 8), unit="percentunit"),
        panel(2, "Memory", "timeseries", [
            target(f"trainwarden_gpu_memory_used_bytes{{{SEL}}}", "{{instance}} GPU {{gpu}} used"),
            target(f"trainwarden_gpu_memory_total_bytes{{{SEL}}}", "{{instance}} GPU {{gpu}} total")],
            (12, 0, 12, 8), unit="bytes", overrides=[dashed(".*total", "red")]),
        panel(3, "Temperature, with the 80 °C line", "timeseries", [
            target(f"trainwarden_gpu_temperature_celsius{{{SEL}}}", "{{instance}} GPU {{gpu}}"),
            target(f"trainwarden_policy_gpu_temperature_max_celsius{{{SEL}}}", "limit {{instance}}")],
            (0, 8, 12, 8), unit="celsius", overrides=[dashed("limit.*", "red")]),
        panel(4, "Power", "timeseries", [target(f"trainwarden_gpu_power_watts{{{SEL}}}", "{{instance}} GPU {{gpu}}")],
              (12, 8, 12, 8), unit="watt"),
        panel(5, "Throttling", "state-timeline", [target(f"trainwarden_gpu_throttle_active{{{SEL}}} == 1",
                                                          "{{instance}} GPU {{gpu}} {{reason}}")], (0, 16, 24, 8)),
        panel(6, "Runs on each GPU (memory)", "timeseries", [target(f"trainwarden_run_gpu_memory_used_bytes{{{SEL}}}",
                                                                    "{{run}} on GPU {{gpu}}")], (0, 24, 24, 8), unit="bytes"),
    ]
    return dashboard("trainwarden-gpu", "trainwarden / GPUs", p, with_run=False)


def main() -> None:
    out = Path(__file__).parent / "dashboards"
    out.mkdir(exist_ok=True)
    for name, build in (("fleet", fleet), ("run", run), ("gpu", gpu)):
        (out / f"trainwarden-{name}.json").write_text(json.dumps(build(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
