"""Every alert, declared once: its name, severity, texts, runbook anchor, the policy settings it compares
against and how long it must hold before it pages. The agent's conditions are made from these declarations
(`AlertRule.fire`), and alerts/trainwarden.rules.yml is held to them by tests/test_alert_parity.py, which runs the
same scenarios through the judge and through `promtool test rules` and compares what fires."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from trainwarden.model import Condition, Severity

RUNBOOK = "docs/contracts/alerts.md"  # one section per alert (its name in lower case): what it means, what to do
# The runbook as a full link (Alertmanager's and Grafana's `runbook_url`): the page above as the repository serves
# it. A deployment that serves its docs elsewhere sets `policy.runbook_base_url`; alerts/trainwarden.rules.yml
# carries this default, held to it by tests/test_alert_parity.py.
RUNBOOK_BASE_URL = "https://github.com/trainwarden/trainwarden/blob/main/docs/contracts/alerts.md"


def runbook_url(name: str, base: str = "") -> str:
    """The full link of an alert's runbook section: `<base>#<name in lower case>`."""
    return f"{(base or RUNBOOK_BASE_URL).rstrip('#')}#{name.lower()}"


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    severity: Severity
    summary: str  # str.format template; `run` and the facts given to fire()
    description: str
    compares: tuple[str, ...] = ()  # the Policy settings the rule compares against
    hold_seconds: float = 0.0  # Prometheus `for:`; the notifier waits as long before it pages
    scope: str = "run"  # "run" or "gpu" (host-level)

    @property
    def runbook(self) -> str:
        return runbook_url(self.name)

    def fire(self, run: str, since: float | None, labels: Mapping[str, str] | None = None, **facts: object) -> Condition:
        values = {"run": run, **facts}
        return Condition(self.name, self.severity, self.summary.format(**values), self.description.format(**values),
                         self.runbook, since, run, dict(labels or {}), hold_seconds=self.hold_seconds)


def _rule(name: str, severity: Severity, summary: str, description: str, compares: tuple[str, ...] = (),
          hold_seconds: float = 0.0, scope: str = "run") -> AlertRule:
    return AlertRule(name, severity, summary, description, compares, hold_seconds, scope)


C, W, INFO = Severity.CRITICAL, Severity.WARNING, Severity.INFO

RULES: tuple[AlertRule, ...] = (
    # -- red: a page ---------------------------------------------------------------------------------------
    _rule("TrainingCUDAOutOfMemory", C, "{run}: CUDA out of memory", "{error}\n{steps}"),
    _rule("TrainingProcessExited", C, "{run}: training process {pid} exited{code} before training ended",
          "The process ended at {where}.\n{steps}"),
    _rule("TrainingStalled", C, "{run}: no progress for over {window:.0f} s",
          "The log has not moved since {when}, several times this run's own pace. Check the process and the GPU.\n{steps}",
          ("stall_floor_seconds", "stall_pace_multiplier", "stall_eval_multiplier", "stall_unknown_seconds")),
    _rule("TrainingLossNotFinite", C, "{run}: loss is nan/inf", "The logged loss at {where} is not finite.\n{steps}"),
    _rule("TrainingLossExplosion", C, "{run}: loss {loss:.4f} exploded ({why})",
          "Loss explosion: the logged loss (the logger's mean over its interval) is {loss:.4f} at {where}: {why}.\n"
          "{steps}\n5. {batch_hint}", ("loss_explosion_factor", "loss_explosion_min_points", "loss_max")),
    _rule("TrainingTargetMissed", C, "{run}: final {key} {value:.4f} below {goal}",
          "The final evaluation ({where}) is {value:.4f}, below the goal {goal}. Analyse the loss trend "
          "(trainwarden analyze), then {plan_b}", ("goal",)),
    _rule("TrainingDegraded", C, "{run}: degraded ({rule})", "{rule}. {advice}"),
    # -- yellow ---------------------------------------------------------------------------------------------
    _rule("TrainingLossRising", W, "{run}: loss up {rise:.0f}% in the short term",
          "Mean of the last {short_n} logged losses {short_mean:.4f} against {long_mean:.4f} before: up more than "
          "{limit:.0f}%. {advice}", ("loss_rise_ratio", "loss_short_window", "loss_long_window")),
    _rule("TrainingLossOutOfRange", W, "{run}: {component} {value:.4f} outside {low}-{high}",
          "{component} is {value:.4f}, outside the healthy range {low}-{high} of the guide. Watch whether it keeps "
          "drifting.", ("loss_range", "component_ranges")),
    _rule("TrainingAccuracyLow", W, "{run}: accuracy {accuracy:.1f}%",
          "Classification accuracy {accuracy:.1f}% is below {limit:.0f}%.", ("accuracy_min_ratio",)),
    _rule("TrainingGradNormHigh", W, "{run}: grad_norm {grad:.2f}",
          "The gradient norm {grad:.2f} is above {limit}{why}: check the learning rate and the data.", ("grad_norm_max",)),
    _rule("TrainingEvaluationFalling", W, "{run}: {key} fell at {falls} evaluations in a row",
          "{key} went {values} while training runs: {drop:.4f} below its best {best:.4f}, more than {multiplier:g} x "
          "its own noise between evaluations ({noise:.4f}). Look at the loss curve and the learning rate.",
          ("metric_fall_evaluations", "metric_fall_noise_multiplier")),
    _rule("TrainingEvaluationBelowTarget", W, "{run}: {key} {value:.4f} below {target} at {where}",
          "{key} {value:.4f} is below the target {target} for {where}.", ("targets",)),
    _rule("TrainingLearningRateCollapsed", W, "{run}: learning rate {lr:.2e}",
          "The learning rate is {lr:.2e}, below {limit:.1e}, while {key} ({value:.4f}) is still below the goal: too "
          "little left to recover. {advice}", ("learning_rate_min",)),
    _rule("TrainingStagnant", W, "{run}: stagnant ({rule})", "{rule}: {advice}.", ("stagnant_band",)),
    _rule("TrainingEndedUnconfirmed", W, "{run}: ended; could not tell whether training completed",
          "Training stopped at {where}. The log states no length (no config dump with max_epochs) and its last lines "
          "do not show the last epoch, and the process's exit code is not known. Compare the last epoch with the one "
          "you asked for; start training with `trainwarden run` to have its exit code judged."),
    _rule("TrainingEarlyStopRisk", W, "{run}: early-stop counter {count}",
          "The early-stop counter is {count}{threshold}. Hints: {hints}."),
    _rule("GPUTemperatureHigh", W, "{gpu_name} at {temp:.0f} °C",
          "{gpu_name} ({model}) is at {temp:.0f} °C, at or above {limit:.0f} °C: check cooling and fan speed.",
          ("gpu_temperature_max_celsius",), hold_seconds=60.0, scope="gpu"),
    _rule("GPUMemoryNearlyFull", W, "{gpu_name} memory {percent:.0f}% used",
          "{gpu_name} uses {used:.1f} of {total:.1f} GiB: an out-of-memory error is near; consider a smaller batch size.",
          ("gpu_memory_full_ratio",), hold_seconds=60.0, scope="gpu"),
    # -- news -----------------------------------------------------------------------------------------------
    _rule("TrainingEvaluationCompleted", INFO, "{run}: {key} {value:.4f} at {where}",
          "Validation at {where}: {key} {value:.4f}.", ("evaluation_news_seconds",)),
    _rule("TrainingTargetReached", INFO, "{run}: {key} {best:.4f} reached the goal", "{key} {best:.4f} >= {goal}: {advice}.",
          ("goal",)),
    _rule("TrainingFinished", INFO, "{run}: training finished", "Finished at {where}."),
    _rule("TrainingEarlyStopped", INFO, "{run}: early stop triggered", "Early stop triggered. {hints}{steps}"),
)

BY_NAME: dict[str, AlertRule] = {r.name: r for r in RULES}


def rule(name: str) -> AlertRule:
    return BY_NAME[name]


def is_host_rule(name: str) -> bool:
    """A GPU's alert (host-level, one per GPU), as opposed to a run's."""
    found = BY_NAME.get(name)
    return found is not None and found.scope == "gpu"
