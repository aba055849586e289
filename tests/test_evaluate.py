"""Table tests of the evaluator: scenario runs (records folded into a real RunState), a policy (the user's guide
profile, or the neutral defaults for the NEUTRAL cases), an injected clock; every alert fires where it should and
stays quiet where it should not; every verdict; and every text reads true (no false comparison, no Python None)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from trainwarden.app.profiles import guide_policy
from trainwarden.judge.policy import DEFAULT_POLICY, PolicySet, policy_from_mapping
from trainwarden.model import (
    CheckpointSaved,
    ConfigFacts,
    EarlyStopCheck,
    EarlyStopTriggered,
    ErrorLine,
    EvalRecord,
    TrainRecord,
)
from trainwarden.outputs.status import document, status_report
from trainwarden.state import RunState

T0 = 1_762_900_000.0
IPE = 1000
KEY = "pascal_voc/mAP"
RECALL = "pascal_voc/recall@100"
GUIDE = guide_policy()  # the user's guide profile (agent/trainwarden/profiles/guide.yaml)
NEUTRAL = DEFAULT_POLICY  # what every run is judged by out of the box


def scenario_report(losses=(0.30,) * 30, evals=(), epoch=None, values=None, quiet=30.0, key=KEY, process=None,
             errors=(), gpus=(), early=(), policy=GUIDE, saved=None, max_epochs=5, end_epoch=False, first_seen_after=None):
    """A run of `len(losses)` logged train lines, 20 s apart, then `evals` (value or (value, recall)) at epochs 1..n;
    judged `quiet` seconds after its last line; first read by the agent `first_seen_after` seconds after it (None:
    the reader's clock is not set, never history)."""
    state = RunState("run", "/w/run", "mmengine")
    state.config_file = "cfg.py"
    evaluator = "VOCMetric" if key == KEY else "CocoMetric" if key.startswith("coco/") else None
    records = [ConfigFacts(T0 - 10, loop="epoch", max_epochs=max_epochs, val_interval=1, batch_size=4,
                           evaluator=evaluator)]
    n_epochs = len(evals)
    train_epoch = epoch or max(1, n_epochs)
    extra = values or {}
    for k, loss in enumerate(losses):
        it = IPE if end_epoch and k == len(losses) - 1 else 50 * (k % 19 + 1)
        records.append(TrainRecord(T0 + 20 * k, train_epoch, it, IPE, None, None,
                                   {"loss": loss, "loss_cls": 0.12, "loss_bbox": 0.17, "acc": 96.0, "grad_norm": 6.0,
                                    "lr": 4e-5, **extra}, 3600.0))
    last = T0 + 20 * (len(losses) - 1)
    for i, ev in enumerate(evals, start=1):
        value, recall = ev if isinstance(ev, tuple) else (ev, None)
        metrics = {key: value, **({RECALL: recall} if recall is not None else {})}
        records.append(EvalRecord(last + i, "val", i, None, metrics))
    records += list(early)
    if saved is not None:
        records.append(CheckpointSaved(last + 0.5, "epoch", saved))
    records += list(errors)
    state.apply_all(records, "s1")
    if process is not None:
        state.set_process(process)
    if first_seen_after is not None:
        state.first_seen = last + first_seen_after
    now = last + quiet + len(evals)
    return status_report([state.snapshot()], PolicySet(policy), now, list(gpus)), now


def scenario(**kwargs) -> dict:
    """The run's status document (what `status --json` prints)."""
    report, _ = scenario_report(**kwargs)
    return document(report)["runs"][0]


def alerts(run):
    return {c["alert"] for c in run["conditions"]}


GPU = {"index": 0, "uuid": "GPU-0", "name": "RTX 4090", "processes": [], "temperature_celsius": 70.0,
       "memory_used_bytes": 10 * 2**30, "memory_total_bytes": 24 * 2**30}
MINE = [{"pid": 42, "used_memory_bytes": 1}]  # the run's process (UP) on the GPU
NAN_HOOK = ErrorLine(T0 + 20 * 29 + 5, "nonfinite_loss", "loss become infinite or NaN!")
FALLING = tuple(0.35 - i * 0.0005 for i in range(110))
UP = {"pid": 42, "up": True, "pids": [42], "exit_code": None, "end_timestamp_seconds": None}

CASES = [
    # name, scenario, must fire, must not fire, health
    ("healthy", {}, set(), {"TrainingLossRising", "TrainingLossOutOfRange", "TrainingLossExplosion"}, "green"),
    ("explosion", {"losses": (0.3,) * 29 + (1.35,)}, {"TrainingLossExplosion"}, {"TrainingLossRising"}, "red"),
    ("exactly the limit is no explosion", {"losses": (0.5,) * 29 + (1.0,)}, set(), {"TrainingLossExplosion"}, None),
    ("nan", {"losses": (0.3,) * 29 + (float("nan"),)}, {"TrainingLossNotFinite"}, {"TrainingLossExplosion"}, "red"),
    ("CheckInvalidLossHook after the last line", {"errors": [NAN_HOOK]},
     {"TrainingLossNotFinite"}, set(), "red"),
    ("rising 20%", {"losses": (0.30,) * 100 + (0.36,) * 10}, {"TrainingLossRising"}, set(), "yellow"),
    ("rising 9% is noise", {"losses": (0.30,) * 100 + (0.327,) * 10}, set(), {"TrainingLossRising"}, None),
    ("total loss above the healthy range", {"losses": (0.40,) * 30}, {"TrainingLossOutOfRange"}, set(), "yellow"),
    ("accuracy low", {"values": {"acc": 85.0}}, {"TrainingAccuracyLow"}, set(), "yellow"),
    ("accuracy at 90% is fine", {"values": {"acc": 90.0}}, set(), {"TrainingAccuracyLow"}, None),
    ("grad norm high", {"values": {"grad_norm": 12.5}}, {"TrainingGradNormHigh"}, set(), "yellow"),
    ("OOM in the console after the last progress",
     {"errors": [ErrorLine(T0 + 20 * 29 + 3, "cuda_oom", "torch.cuda.OutOfMemoryError: CUDA out of memory.")]},
     {"TrainingCUDAOutOfMemory"}, set(), "red"),
    ("an old OOM the run recovered from",
     {"errors": [ErrorLine(T0 - 5, "cuda_oom", "torch.cuda.OutOfMemoryError: CUDA out of memory.")]},
     set(), {"TrainingCUDAOutOfMemory"}, None),
    ("process exited", {"process": {**UP, "up": False, "exit_code": 1, "end_timestamp_seconds": T0 + 600}},
     {"TrainingProcessExited"}, set(), "red"),
    ("process up", {"process": UP}, set(), {"TrainingProcessExited"}, None),
    ("stalled", {"quiet": 3600}, {"TrainingStalled"}, set(), "red"),
    ("quiet but within its pace", {"quiet": 250}, set(), {"TrainingStalled"}, None),
    ("evaluation below its target", {"evals": (0.60, 0.605)}, {"TrainingEvaluationBelowTarget"}, set(), "yellow"),
    ("evaluation at its target", {"evals": (0.60, 0.61)}, {"TrainingEvaluationCompleted"},
     {"TrainingEvaluationBelowTarget"}, "green"),
    ("target reached", {"evals": (0.60, 0.61, 0.635)}, {"TrainingTargetReached"}, set(), None),
    ("final evaluation below the goal", {"evals": (0.60, 0.61, 0.62, 0.625, 0.62), "end_epoch": True, "saved": 5},
     {"TrainingTargetMissed"}, set(), "red"),
    ("degraded", {"evals": (0.60, 0.59, 0.57), "losses": (0.30,) * 100 + (0.31,) * 10}, {"TrainingDegraded"}, set(), "red"),
    ("drops while the loss falls are not degraded", {"evals": (0.60, 0.59, 0.57), "losses": FALLING},
     set(), {"TrainingDegraded"}, None),
    ("stagnant", {"evals": (0.56, 0.58, 0.57)}, {"TrainingStagnant"}, set(), "yellow"),
    ("early-stop risk", {"evals": (0.60, 0.575), "early": [EarlyStopCheck(T0 + 9000, 2, "mAP", 0.575, 0.58, 1, 2, False)]},
     {"TrainingEarlyStopRisk"}, set(), "yellow"),
    ("counter reset", {"evals": (0.60, 0.61), "early": [EarlyStopCheck(T0 + 9000, 2, "mAP", 0.61, None, 0, None, False)]},
     set(), {"TrainingEarlyStopRisk"}, None),
    ("early stopped", {"evals": (0.60, 0.57, 0.55), "early": [EarlyStopTriggered(T0 + 9000, "no_improvement", None, 0.6, "x")]},
     {"TrainingEarlyStopped"}, set(), None),
    ("learning rate collapsed", {"values": {"lr": 2.0e-5}, "evals": (0.60,)}, {"TrainingLearningRateCollapsed"}, set(), "yellow"),
    ("GPU hot", {"process": UP, "gpus": [{**GPU, "temperature_celsius": 83.0, "processes": MINE}]},
     {"GPUTemperatureHigh"}, set(), "yellow"),
    ("GPU at 79 °C", {"process": UP, "gpus": [{**GPU, "temperature_celsius": 79.0, "processes": MINE}]},
     set(), {"GPUTemperatureHigh"}, "green"),
    ("GPU memory nearly full", {"process": UP, "gpus": [{**GPU, "memory_used_bytes": 23.5 * 2**30,
                                                          "processes": [{"pid": 42, "used_memory_bytes": 1}]}]},
     {"GPUMemoryNearlyFull"}, set(), "yellow"),
    ("finished", {"evals": (0.60, 0.61, 0.62, 0.63, 0.64), "end_epoch": True, "saved": 5, "quiet": 10},
     {"TrainingFinished", "TrainingTargetReached"}, {"TrainingTargetMissed"}, "green"),
    ("a finished run's last low accuracy is history",
     {"evals": (0.60, 0.61, 0.62, 0.63, 0.64), "end_epoch": True, "saved": 5, "quiet": 10,
      "values": {"acc": 85.0, "grad_norm": 12.0}},
     {"TrainingFinished"}, {"TrainingAccuracyLow", "TrainingGradNormHigh"}, "green"),
    ("out of memory before the first logged iteration",
     {"losses": (), "errors": [ErrorLine(T0 - 5, "cuda_oom", "torch.cuda.OutOfMemoryError: CUDA out of memory.")]},
     {"TrainingCUDAOutOfMemory"}, set(), "red"),
    ("COCO scale: no KAIST targets", {"key": "coco/bbox_mAP", "evals": (0.30, 0.35), "losses": (0.9,) * 30},
     set(), {"TrainingEvaluationBelowTarget", "TrainingLossOutOfRange", "TrainingTargetMissed"}, "green"),
]


CLASSIFICATION = tuple(0.3 + 3.1 * 0.97 ** i for i in range(150))  # a loss starting at 3.4, falling to ~0.33
WARM_UP = (*(2.0 - 0.05 * i for i in range(24)), 1.9, *(0.85 - 0.002 * i for i in range(40)))  # a spike in warm-up
CRASHED = {**UP, "up": False, "exit_code": 1, "end_timestamp_seconds": T0 + 600}
FINISHED_AT_5 = {"end_epoch": True, "saved": 5, "quiet": 10}

# The neutral defaults: what holds for any training, with no target, band, baseline or plan.
NEUTRAL_CASES = [
    ("healthy", {}, set(), {"TrainingLossExplosion", "TrainingLossOutOfRange", "TrainingAccuracyLow"}, "green"),
    ("a classification loss starting at 3.4 and falling", {"losses": CLASSIFICATION}, set(),
     {"TrainingLossExplosion"}, "green"),
    ("a classification loss early on, still above 1", {"losses": CLASSIFICATION[:30]}, set(), {"TrainingLossExplosion"},
     "green"),
    ("a warm-up spike", {"losses": WARM_UP}, set(), {"TrainingLossExplosion"}, "green"),
    ("explodes against its own median", {"losses": (0.1,) * 29 + (0.5,)}, {"TrainingLossExplosion"}, set(), "red"),
    ("a high loss against its own high median", {"losses": (5.0,) * 29 + (9.0,)}, set(), {"TrainingLossExplosion"},
     "green"),
    ("nan", {"losses": (0.3,) * 29 + (float("nan"),)}, {"TrainingLossNotFinite"}, {"TrainingLossExplosion"}, "red"),
    ("OOM", {"errors": [ErrorLine(T0 + 20 * 29 + 3, "cuda_oom", "torch.cuda.OutOfMemoryError: CUDA out of memory.")]},
     {"TrainingCUDAOutOfMemory"}, set(), "red"),
    ("process exited", {"process": CRASHED}, {"TrainingProcessExited"}, set(), "red"),
    ("process exited before any train line", {"losses": (), "process": CRASHED}, {"TrainingProcessExited"}, set(), "red"),
    ("stalled", {"quiet": 3600}, {"TrainingStalled"}, set(), "red"),
    ("GPU hot", {"process": UP, "gpus": [{**GPU, "temperature_celsius": 83.0, "processes": MINE}]},
     {"GPUTemperatureHigh"}, set(), "yellow"),
    ("no accuracy, grad-norm or learning-rate limit", {"values": {"acc": 60.0, "grad_norm": 50.0, "lr": 1e-7}},
     set(), {"TrainingAccuracyLow", "TrainingGradNormHigh", "TrainingLearningRateCollapsed"}, "green"),
    ("a 2-epoch VOC run ending at 0.62", {"evals": (0.60, 0.62), "max_epochs": 2, "end_epoch": True, "saved": 2,
                                          "quiet": 10},
     {"TrainingFinished"}, {"TrainingTargetMissed", "TrainingTargetReached", "TrainingEvaluationBelowTarget"}, "green"),
    ("a finished COCO run that plateaued", {"key": "coco/bbox_mAP", "evals": (0.58, 0.59, 0.5978, 0.5950, 0.5936),
                                            **FINISHED_AT_5},
     {"TrainingFinished"}, {"TrainingDegraded", "TrainingEvaluationFalling", "TrainingTargetMissed"}, "green"),
    ("a metric falling beyond its noise while training runs",
     {"evals": (0.50, 0.52, 0.53, 0.54, 0.50, 0.45), "max_epochs": 12},
     {"TrainingEvaluationFalling"}, {"TrainingDegraded"}, "yellow"),
    ("a plateau's jitter is not a fall", {"evals": (0.590, 0.594, 0.598, 0.596, 0.594), "max_epochs": 12},
     set(), {"TrainingEvaluationFalling", "TrainingDegraded", "TrainingStagnant"}, None),
    ("no fall after training ended", {"evals": (0.50, 0.52, 0.53, 0.54, 0.50, 0.45), "max_epochs": 6, "end_epoch": True,
                                      "saved": 6, "quiet": 10},
     {"TrainingFinished"}, {"TrainingEvaluationFalling"}, "green"),
]
CASES += [(f"neutral: {name}", {"policy": NEUTRAL, **kwargs}, fire, quiet, health)
          for name, kwargs, fire, quiet, health in NEUTRAL_CASES]
# the guide profile on what its numbers were not written for
CASES += [
    ("guide: a loss that starts above loss_max", {"losses": CLASSIFICATION[:30], "key": "coco/bbox_mAP"}, set(),
     {"TrainingLossExplosion"}, None),
    ("guide: above loss_max after it was below", {"losses": (0.5,) * 29 + (1.01,)}, {"TrainingLossExplosion"}, set(), "red"),
    ("guide: a percentage mAP is no mAP band", {"key": "mAP", "evals": (89.72, 93.44)}, set(),
     {"TrainingTargetReached", "TrainingEvaluationBelowTarget"}, None),
    ("guide: top-1 accuracy as the eval key is a percentage", {"key": "accuracy/top1", "evals": (91.0, 93.44),
                                                               "policy": replace(GUIDE, eval_key="accuracy/top1")},
     set(), {"TrainingTargetReached", "TrainingEvaluationBelowTarget"}, None),
    ("guide: a finished COCO run that plateaued", {"key": "coco/bbox_mAP", "evals": (0.58, 0.59, 0.5978, 0.5950, 0.5936),
                                                   **FINISHED_AT_5},
     {"TrainingFinished"}, {"TrainingDegraded", "TrainingTargetMissed"}, "green"),
    ("guide: degraded says it, not also falling", {"evals": (0.62, 0.625, 0.63, 0.632, 0.60, 0.57), "max_epochs": 12,
                                                    "losses": (0.30,) * 110},
     {"TrainingDegraded"}, {"TrainingEvaluationFalling"}, "red"),
    ("guide: success, then the process crashed", {"evals": (0.60, 0.635), "process": CRASHED},
     {"TrainingProcessExited", "TrainingTargetReached"}, set(), "red"),
]


@pytest.mark.parametrize(("name", "kwargs", "fire", "quiet", "health"), CASES, ids=[c[0] for c in CASES])
def test_alerts(name, kwargs, fire, quiet, health):
    run = scenario(**kwargs)
    got = alerts(run)
    assert fire <= got, f"{name}: expected {fire}, got {got}"
    assert not (quiet & got), f"{name}: {quiet & got} fired"
    if health is not None:
        assert run["health"] == health
    for c in run["conditions"]:
        assert c["severity"] in ("critical", "warning", "info") and c["summary"] and c["description"] and c["runbook"]


NUMBER = r"-?\d+(?:\.\d+)?"
CHAIN = re.compile(rf"{NUMBER}(?:\s*[<>]=?\s*{NUMBER})+")
UNKNOWN_AS_PYTHON = re.compile(r"\bNone\b|\bnan\b|\binf\b|(?<![\d.])0\.0%")


def texts(run: dict) -> list[str]:
    """Every sentence the judge writes for a run."""
    out = [run["verdict_rule"] or "", run["advice"] or "", *run["verdict_reasons"]]
    out += [t for c in run["conditions"] for t in (c["summary"], c["description"])]
    out += [t for check in run["plan_b"] for t in (check["condition"], check["detail"])]
    return out


def false_comparisons(text: str) -> list[str]:
    """`a > b > c` and `a < b` chains in a text that do not hold."""
    wrong = []
    for chain in CHAIN.findall(text):
        parts = re.split(r"\s*([<>]=?)\s*", chain)
        for left, op, right in zip(parts[0::2], parts[1::2], parts[2::2], strict=False):
            a, b = float(left), float(right)
            if not {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]:
                wrong.append(chain)
    return wrong


@pytest.mark.parametrize(("name", "kwargs", "fire", "quiet", "health"), CASES, ids=[c[0] for c in CASES])
def test_every_text_reads_true(name, kwargs, fire, quiet, health):
    """No comparison that does not hold, no Python None/nan/0.0% for an unknown value, in any judge text."""
    for text in texts(scenario(**kwargs)):
        assert not false_comparisons(text), text
        assert not UNKNOWN_AS_PYTHON.search(text.replace("nan/inf", "")), text  # a logged nan/inf is a known value


def test_a_rising_series_is_never_written_as_falling():
    """`0.6188 > 0.6297 > 0.6341` was printed for a rising series (the Plan B check's detail)."""
    run = scenario(evals=((0.6188, 0.81), (0.6297, 0.82), (0.6341, 0.83)), max_epochs=8)
    details = " ".join(c["detail"] for c in run["plan_b"])
    assert "0.6188 -> 0.6297 -> 0.6341" in details and not false_comparisons(details)


def test_red_beside_a_good_verdict_says_why():
    run = scenario(evals=(0.60, 0.635), process=CRASHED)
    assert run["health"] == "red" and run["verdict"] == "success"
    assert "red all the same" in run["verdict_rule"] and "exited" in run["verdict_rule"]


def test_neutral_defaults_judge_no_metric_against_a_number():
    """Out of the box: no target, band, baseline, Plan B or stage advice, whatever the run evaluates."""
    for kwargs in ({"evals": (0.60, 0.62), "max_epochs": 2, "end_epoch": True, "saved": 2, "quiet": 10},
                   {"evals": (0.50, 0.52, 0.571, 0.572, 0.571)}, {"evals": (0.60, 0.635)}):
        run = scenario(policy=NEUTRAL, **kwargs)
        assert run["verdict"] in (None, "in_progress"), run["verdict_rule"]
        assert all(e["target"] is None for e in run["evaluations"])
        assert run["plan_b"] == []
        words = " ".join(texts(run))
        assert "Plan B" not in words and "stage 2.2" not in words and "llvip" not in words.lower()
        assert run["policy"]["goal"] is None and run["policy"]["baselines"] == {}


VERDICTS = [
    ("no evaluation", {}, "in_progress"),
    ("success", {"evals": (0.60, 0.635)}, "success"),
    ("stable", {"evals": (0.60, 0.605)}, "stable"),
    ("stable needs no downward trend", {"evals": (0.62, 0.60)}, "in_progress"),
    ("stagnant", {"evals": (0.56, 0.58, 0.57)}, "stagnant"),
    ("degraded", {"evals": (0.60, 0.59, 0.57), "losses": (0.30,) * 110}, "degraded"),
    ("partial", {"evals": (0.60, 0.61, 0.62, 0.615, 0.62), "end_epoch": True, "saved": 5}, "partial"),
    ("failed", {"evals": (0.50, 0.55, 0.52, 0.53, 0.54), "end_epoch": True, "saved": 5}, "failed"),
    ("Plan B: five epochs below 0.60 and flat", {"evals": (0.50, 0.52, 0.571, 0.572, 0.571)}, "failed"),
]


@pytest.mark.parametrize(("name", "kwargs", "verdict"), VERDICTS, ids=[v[0] for v in VERDICTS])
def test_verdicts(name, kwargs, verdict):
    run = scenario(**kwargs)
    assert run["verdict"] == verdict, run["verdict_rule"]
    assert run["advice"]


def test_plan_b_conditions_are_checked_one_by_one():
    run = scenario(evals=((0.60, 0.83), (0.59, 0.81), (0.57, 0.80)))
    checks = {c["condition"][:20]: c["met"] for c in run["plan_b"]}
    assert list(checks.values()) == [False, True]  # mAP and recall both fell twice; not yet 5 epochs
    assert "stage2_1_kaist_detonly_progressive_macl.py" in run["advice"]


def test_targets_and_met_on_each_evaluation():
    run = scenario(evals=(0.601, 0.605, 0.625))
    assert [(e["target"], e["met"]) for e in run["evaluations"]] == [(0.60, True), (0.61, False), (0.62, True)]


def test_red_advice_is_concrete():
    run = scenario(losses=(0.3,) * 29 + (1.35,))
    text = run["advice"]
    assert "trainwarden tail /w/run -n 50" in text
    assert "python tools/train.py /w/run/cfg.py --work-dir /w/run --resume" in text
    assert "lower batch_size from 4 to 2" in text
    oom = scenario(errors=[ErrorLine(T0 + 20 * 29 + 3, "cuda_oom", "torch.OutOfMemoryError: CUDA out of memory.")])
    assert "--cfg-options train_dataloader.batch_size=2" in oom["advice"]


def test_early_stop_misfire_hints():
    run = scenario(evals=(0.60, 0.5884, 0.5542), values={"lr": 2.5e-6},
                   early=[EarlyStopCheck(T0 + 9000, 3, "mAP", 0.5542, 0.58, 2, 2, True)])
    hints = " ".join(run["early_stop_analysis"]["misfire_hints"])
    assert "too little left to recover" in hints and "fluctuation band" in hints
    assert run["state"] == "early_stopped"


def test_per_run_policy_overrides():
    policy, problems = policy_from_mapping({"loss_max": 2.0, "loss_explosion_factor": None, "goal": 0.5,
                                            "targets": {1: 0.4}}, GUIDE)
    assert not problems
    run = scenario(losses=(0.3,) * 29 + (1.35,), evals=(0.45,), policy=policy)
    assert "TrainingLossExplosion" not in alerts(run) and run["verdict"] == "in_progress"
    run = scenario(evals=(0.55,), policy=replace(policy, targets={1: 0.5}))
    assert run["evaluations"][0]["met"] is True


def test_bad_policy_reports_every_problem():
    _, problems = policy_from_mapping({"loss_max": "high", "targets": {"one": 0.6}, "loss_range": [0.4, 0.2],
                                       "color": "red", "loss_short_window": 0})
    assert len(problems) == 5
