"""The policy: every threshold trainwarden judges a run by, in one place.

This holds what the agent core needs today (when a quiet run counts as stalled, which metric is evaluated);
the health rules of the user's guide extend it.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    # A run that was progressing is stalled after this many times its own median logging interval...
    stall_pace_multiplier: float = 10.0
    # ...but never sooner than this (checkpoint saving, a slow data loader, the first validation).
    stall_floor_seconds: float = 300.0
    # While validating, allow this many times the longest validation seen so far.
    stall_eval_multiplier: float = 2.0
    # The evaluated metric (`pascal_voc/mAP`, `coco/bbox_mAP`, ...); None chooses automatically.
    eval_key: str | None = None


DEFAULT_POLICY = Policy()
