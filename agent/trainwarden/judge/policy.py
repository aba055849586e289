"""The policy: every threshold trainwarden judges a run by, in one place. The defaults are the user's guide
(docs/guide.md); the config file's `policy:` section overrides them for every run, and `runs.NAME.policy`
for one run. `policy_from_mapping` reports every problem at once.
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
    # -- training (healthy ranges while training, epochs 1-5) ------------------------------------------------------
    loss_max: float = 1.0  # a logged loss (a 50-iteration mean) above this is an explosion: red at once
    loss_rise_ratio: float = 0.10  # short-term mean above the longer-term mean by more than this: yellow
    loss_short_window: int = 10  # logged values in the short-term mean (the guide's "last 10 batches")
    loss_long_window: int = 100  # logged values in the longer-term mean before them (the guide's "last 100")
    loss_slope_window: int = 100  # logged values the trend's slope is fitted over
    loss_rising_advice: str = "Wait 100 batches and watch the trend (it may be data noise)."
    loss_range: tuple[float, float] | None = (0.25, 0.35)
    component_ranges: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"loss_cls": (0.10, 0.15), "loss_bbox": (0.15, 0.20)}
    )
    accuracy_min_ratio: float = 0.90
    grad_norm_max: float = 10.0
    grad_norm_note: str = "clip_grad max_norm is 3.0 in the guide's config"  # said with a high grad norm
    learning_rate_min: float = 2.5e-5  # below this cosine annealing has left too little to recover
    gpu_temperature_max_celsius: float = 80.0
    gpu_memory_full_ratio: float = 0.95
    evaluation_news_seconds: float = 900.0  # TrainingEvaluationCompleted stays active this long after a validation
    # -- evaluation ----------------------------------------------------------------------------------------------
    eval_key: str | None = None  # the evaluated metric (`pascal_voc/mAP`, `coco/bbox_mAP`, ...); None: automatic
    recall_key: str | None = None  # None: the first key of the evaluation holding "recall"
    # The targets, goal and bands below are mAP values of the user's KAIST run: they apply when the evaluated key
    # is one of these (or is configured explicitly), never to another scale such as COCO's bbox_mAP.
    target_keys: tuple[str, ...] = ("pascal_voc/mAP", "mAP")
    targets: dict[int, float] = field(default_factory=lambda: {1: 0.60, 2: 0.61, 3: 0.62, 4: 0.63, 5: 0.63})
    goal: float = 0.63
    recall_goal: float = 0.80
    final_loss_range: tuple[float, float] = (0.25, 0.30)
    baselines: dict[str, float] = field(
        default_factory=lambda: {"failed stage-2.1 run (epoch 3)": 0.5265, "stage-1 LLVIP pre-training (epoch 21)": 0.6288}
    )
    stable_min: float = 0.60  # consecutive evaluations at or above, no downward trend: stable
    partial_min: float = 0.60  # final evaluation in [partial_min, goal): partial; below: failed
    stagnant_band: tuple[float, float] = (0.55, 0.59)
    stagnant_evaluations: int = 3
    plan_b_min_epochs: int = 5
    plan_b_flat_delta: float = 0.005  # a change smaller than this over the last evaluations is a flat trend
    # -- early stopping (the user's hook: threshold 0.58, patience 2) ---------------------------------------------
    early_stop_threshold: float | None = 0.58
    early_stop_patience: int | None = 2
    early_stop_backup: bool = True  # copy the best checkpoint to a backup name when early stop triggers
    early_stop_min_delta_max: float = 0.05  # a hook min_delta at or above this is larger than mAP moves per epoch
    early_stop_threshold_advice: str = "lower it (the guide: 0.55, patience 3, from epoch 5)"
    early_stop_recovery: str = ("resume with a constant lr 4e-5, early stop off, up to 8 epochs; success when two "
                                "evaluations in a row are >= 0.60 or one is >= 0.63")
    # -- what to do --------------------------------------------------------------------------------------------------
    plan_label: str = "Plan A"  # this run's plan, shown beside its name in the views
    plan_b_label: str = "Plan B"
    plan_b_summary: str = "λ1 warm-up 0 -> 0.01"
    plan_b_command: str = "python tools/train.py configs/llvip/stage2_1_kaist_detonly_progressive_macl.py"
    success_advice: str = "go to stage 2.2 (re-introduce MACL with a small λ1)"
    stable_advice: str = "one more epoch to confirm, then stage 2.2"
    stagnant_advice: str = "nudge the learning rate or raise batch_size"
    partial_advice: str = "train 3 more epochs"
    recovery_lr_advice: str = "resume with a constant lr such as 4e-5"  # when the learning rate has collapsed
    batch_size_advice: str = "the guide: 4 -> 2"  # when the batch size is not known
    train_script: str = "tools/train.py"
    log_lines_red: int = 50  # log lines carried by a red notification


DEFAULT_POLICY = Policy()

_PAIRS = ("loss_range", "final_loss_range", "stagnant_band")
_INTS = ("loss_short_window", "loss_long_window", "loss_slope_window", "stagnant_evaluations", "plan_b_min_epochs",
         "log_lines_red")
_STRINGS = ("eval_key", "recall_key", "plan_label", "plan_b_command", "train_script", "loss_rising_advice", "grad_norm_note",
            "early_stop_threshold_advice", "early_stop_recovery", "plan_b_label", "plan_b_summary", "success_advice",
            "stable_advice", "stagnant_advice", "partial_advice", "recovery_lr_advice", "batch_size_advice")


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
            if value is None and key == "loss_range":
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
            elif value is None and key not in ("eval_key", "recall_key"):
                problems.append(f"{name}: must not be empty")
            else:
                changes[key] = value
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
        elif key in ("early_stop_threshold", "early_stop_patience") and value is None:
            changes[key] = None
        elif key == "early_stop_patience":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}: expected a whole number of at least 1, got {value!r}")
            else:
                changes[key] = value
        elif (number := _number(name, value, problems)) is not None:
            changes[key] = number
    policy = replace(base, **changes)
    if policy.loss_rise_ratio <= 0 and "loss_rise_ratio" in changes:
        problems.append(f"{where}.loss_rise_ratio: must be above 0")
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
