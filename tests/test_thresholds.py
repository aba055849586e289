"""Every threshold the alerts compare against, pinned from both sides: a value exactly at the limit and one just
past it. A changed default, or a `>` turned into `>=`, fails here (the values are the user's guide, the policy's
defaults; docs/guide.md lists them)."""

from __future__ import annotations

import math

import pytest
from test_evaluate import GPU, MINE, NEUTRAL, UP, alerts, scenario

from trainwarden.judge.rules.registry import RULES

GIB = 2**30

# (policy setting, alert, scenario at the limit (quiet), scenario just past it (fires))
BOUNDARIES = [
    ("loss_max", "TrainingLossExplosion", {"losses": (0.5,) * 29 + (1.0,)}, {"losses": (0.5,) * 29 + (1.0001,)}),
    # 3 x the run's own median (0.25): exactly 0.75 is quiet, just above fires (the neutral defaults)
    ("loss_explosion_factor", "TrainingLossExplosion", {"losses": (0.25,) * 29 + (0.75,), "policy": NEUTRAL},
     {"losses": (0.25,) * 29 + (0.7501,), "policy": NEUTRAL}),
    # 19 losses before the spike are too few to know the run's level; 20 are enough
    ("loss_explosion_min_points", "TrainingLossExplosion", {"losses": (0.25,) * 19 + (5.0,), "policy": NEUTRAL},
     {"losses": (0.25,) * 20 + (5.0,), "policy": NEUTRAL}),
    # the noise is the median change between earlier evaluations (0.02): a drop of exactly 2 x 0.02 from the best
    # is quiet, more fires
    ("metric_fall_noise_multiplier", "TrainingEvaluationFalling",
     {"evals": (0.50, 0.52, 0.54, 0.56, 0.53, 0.52), "max_epochs": 12, "policy": NEUTRAL},
     {"evals": (0.50, 0.52, 0.54, 0.56, 0.53, 0.5199), "max_epochs": 12, "policy": NEUTRAL}),
    ("metric_fall_evaluations", "TrainingEvaluationFalling",
     {"evals": (0.50, 0.52, 0.54, 0.56, 0.56, 0.40), "max_epochs": 12, "policy": NEUTRAL},
     {"evals": (0.50, 0.52, 0.54, 0.56, 0.50, 0.40), "max_epochs": 12, "policy": NEUTRAL}),
    ("loss_rise_ratio", "TrainingLossRising", {"losses": (0.30,) * 100 + (0.3299,) * 10},
     {"losses": (0.30,) * 100 + (0.3301,) * 10}),
    ("loss_range", "TrainingLossOutOfRange", {"losses": (0.3499,) * 30}, {"losses": (0.3501,) * 30}),
    ("component_ranges", "TrainingLossOutOfRange", {"values": {"loss_cls": 0.15}}, {"values": {"loss_cls": 0.1501}}),
    ("accuracy_min_ratio", "TrainingAccuracyLow", {"values": {"acc": 90.0}}, {"values": {"acc": 89.99}}),
    ("grad_norm_max", "TrainingGradNormHigh", {"values": {"grad_norm": 10.0}}, {"values": {"grad_norm": 10.001}}),
    ("learning_rate_min", "TrainingLearningRateCollapsed", {"values": {"lr": 2.5e-5}, "evals": (0.60,)},
     {"values": {"lr": 2.499e-5}, "evals": (0.60,)}),
    ("targets", "TrainingEvaluationBelowTarget", {"evals": (0.60, 0.61)}, {"evals": (0.60, 0.6099)}),
    ("goal", "TrainingTargetReached", {"evals": (0.60, 0.61, 0.6299)}, {"evals": (0.60, 0.61, 0.63)}),
    ("stagnant_band", "TrainingStagnant", {"evals": (0.56, 0.58, 0.591)}, {"evals": (0.56, 0.58, 0.59)}),
    ("gpu_temperature_max_celsius", "GPUTemperatureHigh",
     {"process": UP, "gpus": [{**GPU, "temperature_celsius": 79.9, "processes": MINE}]},
     {"process": UP, "gpus": [{**GPU, "temperature_celsius": 80.0, "processes": MINE}]}),
    ("gpu_memory_full_ratio", "GPUMemoryNearlyFull",
     {"process": UP, "gpus": [{**GPU, "memory_used_bytes": int(0.9499 * 24 * GIB), "processes": MINE}]},
     {"process": UP, "gpus": [{**GPU, "memory_used_bytes": math.ceil(0.95 * 24 * GIB), "processes": MINE}]}),
    ("stall_floor_seconds", "TrainingStalled", {"quiet": 299.0}, {"quiet": 301.0}),
    # news for 900 s after the validation: at 900 s it is no longer news, just inside it is
    ("evaluation_news_seconds", "TrainingEvaluationCompleted", {"evals": (0.60,), "quiet": 900.0},
     {"evals": (0.60,), "quiet": 899.0}),
]


@pytest.mark.parametrize(("setting", "alert", "at_limit", "past_limit"), BOUNDARIES, ids=[b[0] for b in BOUNDARIES])
def test_a_value_at_the_limit_is_quiet_and_just_past_it_fires(setting, alert, at_limit, past_limit):
    assert alert not in alerts(scenario(**at_limit))
    assert alert in alerts(scenario(**past_limit))


def test_every_threshold_a_rule_compares_against_is_pinned():
    """A rule that declares the settings it compares against has a boundary case above for at least one of them."""
    pinned = {setting for setting, *_ in BOUNDARIES}
    unpinned = {r.name: r.compares for r in RULES if r.compares and not set(r.compares) & pinned}
    assert not unpinned, unpinned
