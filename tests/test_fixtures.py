"""`status --json` on every fixture, through the real command, against values checked by hand in the logs
(tests/fixtures/real-logs: public logs, byte for byte; tests/fixtures/design-shapes: the shapes of docs/formats.md)."""

from __future__ import annotations

import json

import pytest
from conftest import DESIGN, REAL, run_cli

EXPECTED = {
    # 200 epochs of 4 iterations; val every 10 epochs; last line is the epoch-200 validation (0.0070).
    REAL / "mmengine_epoch_rtmdet_coco_v0.7.3": {
        "run": "mmengine_epoch_rtmdet_coco_v0.7.3", "framework": "mmengine", "state": "finished",
        "epoch": 200, "max_epochs": 200, "epoch_iteration": 4, "iterations_per_epoch": 4, "iteration": 800,
        "max_iterations": 800, "progress_ratio": 1.0, "loss": 0.0, "learning_rate": 1.0003e-04,
        "iteration_duration_seconds": 13.0387, "cuda_max_allocated_bytes": 7957 * 1048576, "batch_size": 64,
        "evaluations": 20, "first_eval": (10, "coco/bbox_mAP", 0.001), "last_eval": (200, "coco/bbox_mAP", 0.007),
        "best": {"key": "coco/bbox_mAP", "value": 0.009, "epoch": 100, "checkpoint": "best_coco_bbox_mAP_epoch_100.pth"},
        "last_saved": ("epoch", 200), "health": "green", "verdict": None,
        "newest_checkpoint": "/mnt/data/ai4phys/louzekun/projects/mmlab/mmdet/logs_drink/epoch_200.pth",
    },
    # IterBasedTrainLoop, 3000 iterations, val every 400 (7 validations, the last at 2800), ckpt at 3000.
    REAL / "mmengine_iter_mmseg_v0.7.3": {
        "framework": "mmengine", "state": "finished", "epoch": None, "iteration": 3000, "max_iterations": 3000,
        "loss": 0.0294, "accuracy_ratio": 0.889313, "batch_size": 8, "evaluations": 7,
        "first_eval_iteration": 400, "last_eval_iteration": 2800,
        "last_eval": (None, "aAcc", 89.72), "best": {"key": "aAcc", "value": 90.32, "iteration": 2400},
        "losses": {"decode.loss_ce": 0.0207, "aux.loss_ce": 0.0087}, "last_saved": ("iteration", 3000),
        "health": "green",
    },
    # tools/test.py: one Epoch(test) line; no training.
    REAL / "mmengine_test_rtmdet_coco_v0.7.3": {
        "framework": "mmengine", "state": "finished", "epoch": None, "loss": None, "evaluations": 1,
        "last_eval": (None, "coco/bbox_mAP", 0.003), "mode": "test",
    },
    # mmcv 2.x, 5 epochs planned, stopped after `Saving checkpoint at 4 epochs` (epoch 4 at 4100/4139).
    REAL / "mmdet2x_retinanet_voc": {
        # the last train line is `Epoch [4][4100/4139]`, then `Saving checkpoint at 4 epochs`: epoch 4 is done whole
        "framework": "mmcv", "state": "stalled", "epoch": 4, "max_epochs": 5, "epoch_iteration": 4139,
        "iterations_per_epoch": 4139, "iteration": 4 * 4139, "max_iterations": 5 * 4139, "progress_ratio": 0.8,
        "loss": 0.2762,
        "losses": {"loss_cls": 0.1392, "loss_bbox": 0.137}, "learning_rate": 0.002, "batch_size": 4,
        "evaluations": 3, "last_eval": (3, "mAP", 0.8474), "best": {"key": "mAP", "value": 0.85, "epoch": 2},
        "last_saved": ("epoch", 4), "health": "red", "verdict": "in_progress",  # the neutral defaults: no goal
        "alerts": ["TrainingStalled"],
    },
    # mmcv 2.x, 10 epochs, no train lines (log interval > iterations per epoch), 10 COCO validations.
    REAL / "mmdet2x_maskrcnn_coco_balloon": {
        # the epoch is what `Saving checkpoint at 10 epochs` and `Epoch(val) [10][13]` say (issue 12)
        "framework": "mmcv", "state": "finished", "epoch": 10, "max_epochs": 10, "progress_ratio": 1.0, "evaluations": 10,
        "last_eval": (10, "bbox_mAP", 0.7659), "best": {"key": "bbox_mAP", "value": 0.774, "epoch": 6},
        "last_saved": ("epoch", 10),
    },
    # two sessions (a resume), the user's early-stop lines, a nan loss, an early-stop trigger.
    DESIGN / "mmengine_kaist_resumed": {
        "framework": "mmengine", "state": "early_stopped", "epoch": 3, "max_epochs": 5, "iteration": 34317,
        "max_iterations": 57195, "progress_ratio": 0.6, "loss": 0.285, "accuracy_ratio": 0.96875, "grad_norm": 7.1234,
        "learning_rate": 4e-05, "batch_size": 4, "evaluations": 3, "last_eval": (3, "pascal_voc/mAP", 0.5542),
        "best": {"key": "pascal_voc/mAP", "value": 0.6012, "epoch": 1, "iteration": 11439},
        "config": "stage2_1_kaist_detonly_pure_detection.py", "sessions": ["20251111_180600", "20251112_090000"],
        "resumes": [(2, 22878)], "errors": {"nonfinite_loss": 2}, "last_saved": ("epoch", 3),
        "early_stopping": {"counter": 2, "patience": 2, "threshold": 0.6, "triggered": True},
        # the neutral defaults: an early stop is a normal end (tests/test_profiles.py judges it by the guide)
        "health": "green", "verdict": None, "alerts": ["TrainingEarlyStopped"],
        "checkpoint_files": ["epoch_1.pth", "epoch_2.pth", "epoch_3.pth", "best_pascal_voc_mAP_epoch_1.pth",
                             "best_pascal_voc/mAP_epoch_1.pth"],
    },
    # CRLF line ends and a GBK-encoded Chinese line: parsed like any other log.
    DESIGN / "windows_gbk_crlf": {
        "framework": "mmengine", "epoch": 1, "epoch_iteration": 11439, "loss": 0.2998, "batch_size": 4,
        "evaluations": 0, "decode_fallbacks": 1,
    },
}


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    """Each fixture judged as if watched while it ran: these logs are years old, which alone makes them history
    (never red; test_run_end.py), so history is turned off here."""
    cfg = tmp_path_factory.mktemp("cfg") / "live.yml"
    cfg.write_text("policy:\n  history_after_seconds: 1.0e+12\n", encoding="utf-8")
    out = {}
    for path in EXPECTED:
        result = run_cli("status", "--json", "--config.file", str(cfg), str(path))
        doc = json.loads(result.stdout)
        assert len(doc["runs"]) == 1
        assert result.returncode == (3 if doc["runs"][0]["health"] == "red" else 0), result.stderr
        out[path] = doc["runs"][0]
    return out


@pytest.mark.parametrize("path", list(EXPECTED), ids=lambda p: p.name)
def test_status_json_on_fixture(path, documents):
    run, want = documents[path], EXPECTED[path]
    assert run["run"] == path.name
    assert run["work_dir"] == str(path.absolute())
    for key in ("framework", "state", "epoch", "max_epochs", "epoch_iteration", "iterations_per_epoch", "iteration",
                "max_iterations", "loss", "learning_rate", "grad_norm", "iteration_duration_seconds",
                "cuda_max_allocated_bytes", "batch_size", "config", "sessions", "newest_checkpoint"):
        if key in want:
            assert run[key] == pytest.approx(want[key]) if isinstance(want[key], float) else run[key] == want[key], key
    for key in ("progress_ratio", "accuracy_ratio"):
        if key in want:
            assert run[key] == pytest.approx(want[key]), key
    if "losses" in want:
        assert run["losses"] == pytest.approx(want["losses"])
    evals = run["evaluations"]
    assert len(evals) == want["evaluations"]
    if "last_eval" in want:
        epoch, key, value = want["last_eval"]
        assert evals[-1]["epoch"] == epoch and evals[-1]["metrics"][key] == pytest.approx(value)
        assert evals[-1]["mode"] == want.get("mode", "val")
    if "first_eval" in want:
        epoch, key, value = want["first_eval"]
        assert evals[0]["epoch"] == epoch and evals[0]["metrics"][key] == pytest.approx(value)
    if "first_eval_iteration" in want:
        assert [e["iteration"] for e in evals] == list(range(want["first_eval_iteration"],
                                                              want["last_eval_iteration"] + 1, 400))
    if "best" in want:
        for key, value in want["best"].items():
            assert run["best"][key] == value, key
    if "last_saved" in want:
        assert (run["last_saved"]["unit"], run["last_saved"]["number"]) == want["last_saved"]
    if "resumes" in want:
        assert [(r["epoch"], r["iteration"]) for r in run["resumes"]] == want["resumes"]
    for kind, count in want.get("errors", {}).items():
        assert run["log"]["errors_total"][kind] == count
    if "decode_fallbacks" in want:
        assert run["log"]["decode_fallbacks_total"] == want["decode_fallbacks"]
    if "early_stopping" in want:
        for key, value in want["early_stopping"].items():
            assert run["early_stopping"][key] == value, key
    if "checkpoint_files" in want:
        assert sorted(c["file"] for c in run["checkpoints"]) == sorted(want["checkpoint_files"])
    assert run["log"]["parse_errors_total"] == 0
    for key in ("health", "verdict"):
        if key in want:
            assert run[key] == want[key], key
    if "alerts" in want:
        assert [c["alert"] for c in run["conditions"]] == want["alerts"]


def test_status_json_on_a_folder_of_runs_lists_every_run():
    result = run_cli("status", "--json", str(REAL))
    assert result.returncode == 0, result.stderr  # every run is years old: history, never red (issue 12, finding 3)
    doc = json.loads(result.stdout)
    assert sorted(r["run"] for r in doc["runs"]) == sorted(p.name for p in REAL.iterdir() if p.is_dir())
    assert doc["gpus"] == []


def test_status_table_names_every_run():
    result = run_cli("status", str(REAL))
    assert result.returncode == 0, result.stderr  # history: shown, never red
    for path in REAL.iterdir():
        if path.is_dir():
            assert path.name[:20] in result.stdout
    assert "finished" in result.stdout and "interrupted" in result.stdout


def test_json_logs_serve_a_session_without_its_text_log(copy_fixture):
    """The text log wins when both exist; a session with only MMEngine's scalars.json or mmcv's .log.json (the
    text log deleted, or only vis_data copied) is still read."""
    wd = copy_fixture(REAL / "mmengine_epoch_rtmdet_coco_v0.7.3")
    (wd / "20230611_194513" / "20230611_194513.log").unlink()
    run = json.loads(run_cli("status", "--json", str(wd)).stdout)["runs"][0]
    assert run["epoch"] == 200 and run["iteration"] == 800 and run["loss"] == pytest.approx(4.7483178377660807e-07)
    assert len(run["evaluations"]) == 20 and run["evaluations"][-1]["epoch"] == 200
    assert run["evaluations"][-1]["metrics"]["coco/bbox_mAP"] == 0.007

    wd = copy_fixture(REAL / "mmdet2x_retinanet_voc")
    (wd / "20230208_061338.log").unlink()
    run = json.loads(run_cli("status", "--json", str(wd)).stdout)["runs"][0]
    assert run["framework"] == "mmcv" and run["max_epochs"] == 5  # from the config in the first JSON line
    assert [e["epoch"] for e in run["evaluations"]] == [1, 2, 3]
    assert run["evaluations"][1]["metrics"]["mAP"] == 0.85002  # the JSON keeps more digits than the text log
    assert run["epoch"] == 4 and run["epoch_iteration"] == 4100 and run["loss"] == 0.27619


def test_a_test_dump_without_its_text_log(copy_fixture):
    wd = copy_fixture(REAL / "mmengine_test_rtmdet_coco_v0.7.3")
    (wd / "20230611_201106" / "20230611_201106.log").unlink()
    run = json.loads(run_cli("status", "--json", str(wd)).stdout)["runs"][0]
    assert [(e["mode"], e["metrics"]["coco/bbox_mAP"]) for e in run["evaluations"]] == [("test", 0.003)]
