"""The policy: every threshold trainwarden judges a run by, in one place. The defaults are neutral: what holds
for any training (a loss that is not finite or explodes against the run's own history, an out-of-memory, a dead,
stalled or crashed process, GPU heat and memory, a metric falling beyond its own noise). Targets, bands,
baselines, a Plan B and stage advice belong to one project: they come from a profile (`policy.profile: guide`,
the user's guide in `trainwarden/profiles/guide.yaml`, or a path to one's own YAML). The config file's `policy:`
section overrides them for every run, and `runs.NAME.policy` for one run. `policy_from_mapping` reports every
problem at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

# Metrics tried, in order, when no key is configured and no best-checkpoint line names one.
PREFERRED_EVAL_KEYS = (
    "pascal_voc/mAP",
    "coco/bbox_mAP",
    "mAP",
    "bbox_mAP",
    "coco/segm_mAP",
    "segm_mAP",
    "mIoU",
    "accuracy/top1",
    "aAcc",
)


@dataclass(frozen=True)
class Policy:
    """A setting of None is off: its alert never fires (and its `trainwarden_policy_*` series is not exported)."""

    # -- the run's own pace --------------------------------------------------------------------------------------
    # A run that was progressing is stalled after this many times its own median logging interval...
    stall_pace_multiplier: float = 10.0
    # ...but never sooner than this (checkpoint saving, a slow data loader, the first validation).
    stall_floor_seconds: float = 300.0
    # While validating, allow this many times the longest validation seen so far...
    stall_eval_multiplier: float = 2.0
    # ...and this long while the run's pace is not known yet: before its second logged line, and during its first
    # validation (mmcv logs no progress while it validates).
    stall_unknown_seconds: float = 1800.0
    # A run already quiet this long when the agent first sees it is history: shown, never paged (lifecycle.py).
    history_after_seconds: float = 86400.0
    # -- the loss against the run's own history (any training) ---------------------------------------------------
    # A logged loss above this many times the median of the run's logged losses is an explosion (red)...
    loss_explosion_factor: float | None = 3.0
    # ...once the run has logged this many losses before it (a warm-up's first lines say nothing of the run's level)
    loss_explosion_min_points: int = 20
    # An absolute limit: a logged loss above it is an explosion, but only once the run had been at or below it (a
    # loss that starts above it, as a classification loss of 3.4 does, is not).
    loss_max: float | None = None
    # -- evaluations against their own noise (any training) ------------------------------------------------------
    # Yellow while training runs: the metric fell at this many evaluations in a row, and the last is below the best
    # by more than `metric_fall_noise_multiplier` times the run's own noise (the median change between evaluations).
    metric_fall_evaluations: int = 2
    metric_fall_noise_multiplier: float = 2.0
    # -- a profile's healthy ranges while training -----------------------------------------------------------------
    loss_rise_ratio: float | None = None  # short-term mean above the longer-term mean by more than this: yellow
    loss_short_window: int = 10  # logged values in the short-term mean
    loss_long_window: int = 100  # logged values in the longer-term mean before them
    loss_slope_window: int = 100  # logged values the trend's slope is fitted over
    loss_rising_advice: str = "Wait for more logged values and watch the trend (it may be data noise)."
    loss_range: tuple[float, float] | None = None
    component_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    accuracy_min_ratio: float | None = None
    grad_norm_max: float | None = None
    grad_norm_note: str = ""  # said with a high grad norm
    learning_rate_min: float | None = None  # below this there is too little left to recover (needs a goal)
    gpu_temperature_max_celsius: float = 80.0
    gpu_memory_full_ratio: float = 0.95
    evaluation_news_seconds: float = 900.0  # TrainingEvaluationCompleted stays active this long after a validation
    # -- evaluation ----------------------------------------------------------------------------------------------
    eval_key: str | None = None  # the evaluated metric (`pascal_voc/mAP`, `coco/bbox_mAP`, ...); None: automatic
    recall_key: str | None = None  # None: the first key of the evaluation holding "recall"
    # A profile's targets, goal and bands are values of one metric on one scale: they apply only when the evaluated
    # key is one of `target_keys`, and never to a percentage metric (a value above 1: aAcc 89.72, top-1 93.44).
    target_keys: tuple[str, ...] = ()
    targets: dict[int, float] = field(default_factory=dict)
    goal: float | None = None
    recall_goal: float | None = None
    final_loss_range: tuple[float, float] | None = None
    baselines: dict[str, float] = field(default_factory=dict)
    stable_min: float | None = None  # consecutive evaluations at or above, no downward trend: stable
    partial_min: float | None = None  # final evaluation in [partial_min, goal): partial; below: failed
    stagnant_band: tuple[float, float] | None = None
    stagnant_evaluations: int = 3
    plan_b_min_epochs: int = 5
    plan_b_flat_delta: float = 0.005  # a change smaller than this over the last evaluations is a flat trend
    # -- early stopping (the hook's own threshold and patience, as the log tells, unless a profile says) ----------
    early_stop_threshold: float | None = None
    early_stop_patience: int | None = None
    early_stop_backup: bool = True  # copy the best checkpoint to a backup name when early stop triggers
    early_stop_min_delta_max: float | None = None  # a hook min_delta at or above this is larger than the metric moves
    early_stop_threshold_advice: str = "lower it or raise the patience"
    early_stop_recovery: str = "resume from the best checkpoint with a larger patience or early stopping off"
    # -- what to do (a profile's plan; empty: none) ------------------------------------------------------------------
    plan_label: str = ""  # this run's plan, shown beside its name in the views
    plan_b_label: str = ""
    plan_b_summary: str = ""
    plan_b_command: str = ""
    success_advice: str = "the goal is reached"
    stable_advice: str = "keep watching"
    stagnant_advice: str = "nudge the learning rate or raise the batch size"
    partial_advice: str = "train longer"
    recovery_lr_advice: str = "resume with a constant learning rate"  # when the learning rate has collapsed
    batch_size_advice: str = "halve it"  # when the batch size is not known
    train_script: str = "tools/train.py"
    log_lines_red: int = 50  # log lines carried by a red notification
    runbook_base_url: str = ""  # where the alerts' runbook lives; empty: the registry's RUNBOOK_BASE_URL


DEFAULT_POLICY = Policy()

_PAIRS = ("loss_range", "final_loss_range", "stagnant_band")  # each may be null (off)
_INTS = ("loss_short_window", "loss_long_window", "loss_slope_window", "stagnant_evaluations", "plan_b_min_epochs",
         "log_lines_red", "loss_explosion_min_points", "metric_fall_evaluations")
_STRINGS = ("eval_key", "recall_key", "plan_label", "plan_b_command", "train_script", "loss_rising_advice", "grad_norm_note",
            "early_stop_threshold_advice", "early_stop_recovery", "plan_b_label", "plan_b_summary", "success_advice",
            "stable_advice", "stagnant_advice", "partial_advice", "recovery_lr_advice", "batch_size_advice",
            "runbook_base_url")
_MAY_BE_EMPTY = ("eval_key", "recall_key", "plan_label", "plan_b_command", "plan_b_label", "plan_b_summary",
                 "grad_norm_note", "runbook_base_url")
# numbers that may be null: the setting is off
_OPTIONAL_NUMBERS = ("loss_explosion_factor", "loss_max", "loss_rise_ratio", "accuracy_min_ratio", "grad_norm_max",
                     "learning_rate_min", "goal", "recall_goal", "stable_min", "partial_min", "early_stop_threshold",
                     "early_stop_min_delta_max")


def _pair(name: str, value: Any, problems: list[str]) -> tuple[float, float] | None:
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) and value[0] <= value[1]):
        return (float(value[0]), float(value[1]))
    problems.append(f"{name}: expected [low, high] with low <= high, got {value!r}")
    return None


def _number(name: str, value: Any, problems: list[str]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{name}: expected a number, got {value!r}")
        return None
    if value < 0:
        problems.append(f"{name}: must not be negative, got {value}")
        return None
    return float(value)


def policy_from_mapping(data: dict, base: Policy = DEFAULT_POLICY, where: str = "policy") -> tuple[Policy, list[str]]:
    """A policy with `data`'s overrides on top of `base`, and every problem found (prefixed with `where`)."""
    problems: list[str] = []
    known = {f.name for f in fields(Policy)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{where}.{key}"
        if key not in known:
            problems.append(f"{name}: unknown setting")
        elif key in _PAIRS:
            if value is None:
                changes[key] = None
            elif (pair := _pair(name, value, problems)) is not None:
                changes[key] = pair
        elif key in _INTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}: expected a whole number of at least 1, got {value!r}")
            else:
                changes[key] = value
        elif key in _STRINGS:
            if value is not None and not isinstance(value, str):
                problems.append(f"{name}: expected text, got {value!r}")
            elif value is None and key not in _MAY_BE_EMPTY:
                problems.append(f"{name}: must not be empty")
            else:
                changes[key] = value if value is not None or key in ("eval_key", "recall_key") else ""
        elif key == "target_keys":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(f"{name}: expected a list of metric names")
            else:
                changes[key] = tuple(value)
        elif key in ("targets", "baselines", "component_ranges"):
            parsed = _mapping(name, key, value, problems)
            if parsed is not None:
                changes[key] = parsed
        elif key == "early_stop_backup":
            if not isinstance(value, bool):
                problems.append(f"{name}: expected true or false")
            else:
                changes[key] = value
        elif key in (*_OPTIONAL_NUMBERS, "early_stop_patience") and value is None:
            changes[key] = None
        elif key == "early_stop_patience":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}: expected a whole number of at least 1, got {value!r}")
            else:
                changes[key] = value
        elif (number := _number(name, value, problems)) is not None:
            changes[key] = number
    policy = replace(base, **changes)
    for positive in ("loss_rise_ratio", "loss_explosion_factor"):
        value = getattr(policy, positive)
        if positive in changes and value is not None and value <= 0:
            problems.append(f"{where}.{positive}: must be above 0")
    return policy, problems


def _mapping(name: str, key: str, value: Any, problems: list[str]) -> dict | None:
    if not isinstance(value, dict):
        problems.append(f"{name}: expected a mapping, got {value!r}")
        return None
    out: dict = {}
    for k, v in value.items():
        if key == "targets":
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                problems.append(f"{name}: epochs must be whole numbers from 1, got {k!r}")
                continue
            if (number := _number(f"{name}.{k}", v, problems)) is not None:
                out[k] = number
        elif key == "baselines":
            if (number := _number(f"{name}.{k}", v, problems)) is not None:
                out[str(k)] = number
        elif (pair := _pair(f"{name}.{k}", v, problems)) is not None:
            out[str(k)] = pair
    return out


def target_for_epoch(policy: Policy, epoch: int | None) -> float | None:
    """The target of an epoch: its own, else the one of the last epoch that has one (epochs 6, 7, ...: 0.63)."""
    if epoch is None or not policy.targets:
        return None
    if epoch in policy.targets:
        return policy.targets[epoch]
    earlier = [e for e in policy.targets if e <= epoch]
    return policy.targets[max(earlier)] if earlier else None


@dataclass(frozen=True)
class PolicySet:
    """The policy of every run: the default, and per-run overrides by run name."""

    default: Policy = DEFAULT_POLICY
    per_run: dict[str, Policy] = field(default_factory=dict)

    def for_run(self, run: str) -> Policy:
        return self.per_run.get(run, self.default)


def as_policy_set(policy: Policy | PolicySet) -> PolicySet:
    return policy if isinstance(policy, PolicySet) else PolicySet(policy)
