"""Neutral defaults, the user's guide as a profile (issue 12, finding 4): the profile loads from the config for all
runs or one, from a path, and a wrong one is a config error; the shipped guide holds every number of the guide;
and on the real logs (tests/fixtures/real-logs), replayed line by line, the neutral defaults and the guide never
page red for a loss explosion, nor the neutral defaults red at all."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import DESIGN, REAL, run_cli

from trainwarden.app.config import ConfigError, load_config
from trainwarden.app.profiles import guide_policy, load_profile, shipped_profiles
from trainwarden.judge.judge import judge
from trainwarden.judge.policy import DEFAULT_POLICY
from trainwarden.model import Severity, TrainRecord
from trainwarden.parse.stream import parse_lines
from trainwarden.state import RunState


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_guide_ships_as_a_profile_with_every_number_of_the_guide():
    guide = guide_policy()
    assert "guide" in shipped_profiles()
    assert guide.targets == {1: 0.60, 2: 0.61, 3: 0.62, 4: 0.63, 5: 0.63} and guide.goal == 0.63
    assert guide.target_keys == ("pascal_voc/mAP", "mAP")
    assert guide.baselines == {"failed stage-2.1 run (epoch 3)": 0.5265, "stage-1 LLVIP pre-training (epoch 21)": 0.6288}
    assert guide.loss_range == (0.25, 0.35) and guide.final_loss_range == (0.25, 0.30)
    assert guide.component_ranges == {"loss_cls": (0.10, 0.15), "loss_bbox": (0.15, 0.20)}
    assert guide.loss_max == 1.0 and guide.accuracy_min_ratio == 0.90 and guide.grad_norm_max == 10.0
    assert "3.0" in guide.grad_norm_note and guide.learning_rate_min == 2.5e-5
    assert guide.plan_b_command.endswith("configs/llvip/stage2_1_kaist_detonly_progressive_macl.py")
    assert "stage 2.2" in guide.success_advice and guide.stagnant_band == (0.55, 0.59)
    assert (guide.early_stop_threshold, guide.early_stop_patience) == (0.58, 2)


def test_neutral_defaults_hold_no_project():
    neutral = DEFAULT_POLICY
    assert neutral.targets == {} and neutral.goal is None and neutral.baselines == {} and neutral.target_keys == ()
    assert neutral.loss_range is None and neutral.component_ranges == {} and neutral.loss_max is None
    assert neutral.plan_b_command == "" and "stage" not in neutral.success_advice
    assert neutral.accuracy_min_ratio is None and neutral.grad_norm_max is None and neutral.learning_rate_min is None


def test_profile_for_all_runs_and_for_one(tmp_path):
    cfg = load_config(write(tmp_path / "c.yml", "policy:\n  profile: guide\n  goal: 0.7\n"))
    assert cfg.policies.default == replace(guide_policy(), goal=0.7)
    cfg = load_config(write(tmp_path / "c.yml", "runs:\n  kaist:\n    policy: {profile: guide}\n  other: {pid: 4}\n"))
    assert cfg.policies.for_run("kaist") == guide_policy()
    assert cfg.policies.for_run("other") == DEFAULT_POLICY


def test_a_profile_of_ones_own_by_path(tmp_path):
    mine = write(tmp_path / "mine.yaml", "target_keys: [coco/bbox_mAP]\ngoal: 0.4\nplan_b_command: python x.py\n")
    cfg = load_config(write(tmp_path / "c.yml", f"policy:\n  profile: {mine.as_posix()}\n"))
    assert cfg.policies.default.goal == 0.4 and cfg.policies.default.target_keys == ("coco/bbox_mAP",)
    assert cfg.policies.default.loss_max is None  # the rest stays neutral


@pytest.mark.parametrize(("profile", "fragment"), [
    ("giude", "unknown profile 'giude'"),
    ("{missing}", "cannot read"),
    ("{bad_key}", "colour: unknown setting"),
    ("{bad_value}", "goal: expected a number"),
    ("7", "expected a profile name"),
])
def test_a_wrong_profile_is_a_config_error(tmp_path, profile, fragment):
    files = {"missing": tmp_path / "nope.yaml", "bad_key": write(tmp_path / "k.yaml", "colour: red\n"),
             "bad_value": write(tmp_path / "v.yaml", "goal: high\n")}
    name = profile.format(**{k: v.as_posix() for k, v in files.items()})
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path / "c.yml", f"policy:\n  profile: {name}\n"))
    assert fragment in str(raised.value)


def test_a_wrong_profile_exits_2(tmp_path):
    cfg = write(tmp_path / "c.yml", "runs:\n  r:\n    policy: {profile: nosuch}\n")
    result = run_cli("status", "--config.file", str(cfg), str(REAL / "mmdet2x_retinanet_voc"))
    assert result.returncode == 2 and "runs.r.policy.profile: unknown profile 'nosuch'" in result.stderr


def test_load_profile_reports_every_problem():
    _, problems = load_profile("guide")
    assert problems == []


REAL_LOGS = sorted(p for p in REAL.rglob("*.log"))


@pytest.mark.parametrize("log", REAL_LOGS, ids=[p.parent.name if p.parent != REAL else p.name for p in REAL_LOGS])
def test_real_curves_never_explode_and_neutral_never_pages_red(log):
    """Each real log replayed record by record, judged after every train line as a live watcher would (a second
    after it): no TrainingLossExplosion under either profile, no red at all under the neutral defaults."""
    text = log.read_text(encoding="utf-8", errors="replace")
    records = parse_lines(text.splitlines(), 2023)
    state = RunState(log.parent.name, str(log.parent), "mmengine")
    guide, judged = guide_policy(), 0
    for record in records:
        state.apply(record, "s1")
        if not isinstance(record, TrainRecord) or record.ts is None:
            continue
        snap = state.snapshot()
        neutral = judge(snap, DEFAULT_POLICY, record.ts + 1)
        red = [c.alert for c in neutral.conditions if c.severity == Severity.CRITICAL]
        assert not red, (record, red)
        assert "TrainingLossExplosion" not in {c.alert for c in judge(snap, guide, record.ts + 1).conditions}
        judged += 1
    # every train line was judged; a log without one (the Mask R-CNN run's logging interval exceeds its epoch,
    # tools/test.py sessions, a validation-only workflow) has nothing to judge
    assert records and (judged or not any(m in text for m in ("Epoch(train)", "Iter(train)", "lr: ")))


def test_the_profile_flag_judges_every_run_by_that_profile():
    voc = str(REAL / "mmdet2x_retinanet_voc")  # mmcv VOC `mAP` 0.85 at best: the guide's goal is 0.63
    guided = json.loads(run_cli("status", "--json", "--profile", "guide", voc).stdout)["runs"][0]
    neutral = json.loads(run_cli("status", "--json", voc).stdout)["runs"][0]
    assert "TrainingTargetReached" in {c["alert"] for c in guided["conditions"]} and guided["verdict"] == "success"
    assert "TrainingTargetReached" not in {c["alert"] for c in neutral["conditions"]} and neutral["verdict"] != "success"
    result = run_cli("status", "--profile", "nope", voc)
    assert result.returncode == 2 and "--profile: unknown profile 'nope'" in result.stderr


def test_the_guide_judges_the_users_early_stopped_kaist_run(tmp_path):
    """The user's own run (design-shapes): by the guide, early stopped at 0.5542 is red, failed, with Plan B."""
    cfg = tmp_path / "trainwarden.yml"  # judged as if watched while it ran: years old, it would be history (never red)
    cfg.write_text("policy:\n  profile: guide\n  history_after_seconds: 1.0e+12\n")
    result = run_cli("status", "--json", "--config.file", str(cfg), str(DESIGN / "mmengine_kaist_resumed"))
    run = json.loads(result.stdout)["runs"][0]
    assert run["health"] == "red" and run["verdict"] == "failed"
    assert {c["alert"] for c in run["conditions"]} == {"TrainingTargetMissed", "TrainingEarlyStopped"}
    assert "configs/llvip/stage2_1_kaist_detonly_progressive_macl.py" in run["advice"]


@pytest.mark.parametrize("run", ["mmengine_iter_mmseg_v0.7.3", "mmdet2x_maskrcnn_coco_balloon"])
def test_analyze_offers_the_guides_plan_b_only_to_the_metric_it_was_written_for(run):
    """The LLVIP Plan B was offered to COCO and segmentation runs: under the guide, their metrics have no target."""
    a = json.loads(run_cli("analyze", "--json", "--profile", "guide", str(REAL / run)).stdout)
    assert "Plan B" not in a["next_step"]["commands"] and a["plan_b"] == []
    assert "llvip" not in json.dumps(a["verdict"]).lower()


def _train(ts: float, it: int, loss: float) -> TrainRecord:
    return TrainRecord(ts, 1, it, 1000, None, None, {"loss": loss, "lr": 1e-4}, 600.0)


def test_a_second_training_into_the_same_work_dir_is_not_measured_against_the_first():
    """A new attempt (not a resume) starts from a high loss again: the first attempt's low median is not its level."""
    state = RunState("run", "/w/run", "mmengine")
    t0 = 1_762_900_000.0
    state.apply_all([_train(t0 + 20 * k, 50 * (k + 1), 0.3) for k in range(40)], "20251111_180600")
    again = t0 + 86_400
    state.apply_all([_train(again + 20 * k, 50 * (k + 1), 1.6 - 0.01 * k) for k in range(3)], "20251112_090000")
    judged = judge(state.snapshot(), DEFAULT_POLICY, again + 41)
    assert "TrainingLossExplosion" not in {c.alert for c in judged.conditions}
    assert judged.loss_history is not None and judged.loss_history.points == 2
    # within one attempt the same jump is an explosion
    state = RunState("run", "/w/run", "mmengine")
    state.apply_all([_train(t0 + 20 * k, 50 * (k + 1), 0.3) for k in range(40)] + [_train(t0 + 900, 2050, 1.6)], "s1")
    assert "TrainingLossExplosion" in {c.alert for c in judge(state.snapshot(), DEFAULT_POLICY, t0 + 901).conditions}


def test_the_runbook_is_a_full_link_with_a_configurable_base():
    from test_evaluate import scenario

    run = scenario(losses=(0.3,) * 29 + (1.35,), policy=DEFAULT_POLICY)
    assert all(c["runbook"].startswith("https://") and c["runbook"].endswith("#" + c["alert"].lower())
               for c in run["conditions"])
    mine = replace(DEFAULT_POLICY, runbook_base_url="https://docs.example/alerts.html")
    run = scenario(losses=(0.3,) * 29 + (1.35,), policy=mine)
    assert {c["runbook"] for c in run["conditions"]} == {"https://docs.example/alerts.html#traininglossexplosion"}
