"""`trainwarden status`'s table on real runs: the evaluation column tells the run's last validation."""

from __future__ import annotations

import json

from conftest import REAL, run_cli
from rich.console import Console

from trainwarden.model import StatusReport
from trainwarden.model.codec import from_plain
from trainwarden.outputs.views.status_table import render_status


def table_of(*runs: str) -> dict[str, str]:
    """The table's text, one entry per run: its row as the terminal shows it (no wrapping in a wide console)."""
    result = run_cli("status", "--json", *(str(REAL / r) for r in runs))
    report = from_plain(StatusReport, json.loads(result.stdout))
    console = Console(width=400, record=True, color_system=None)
    render_status(report, console, now=0.0)
    lines = console.export_text().splitlines()
    return {r: "\n".join(line for line in lines if r[:20] in line) for r in runs}


def test_the_last_evaluation_is_the_last_validation_not_a_later_test():
    """tools/test.py run after the training (`Epoch(test) [6/6]  PCK: 0.9728`) is not the run's last evaluation:
    its last validation is (`Epoch(val) [300][6/6]  PCK: 0.972789`)."""
    row = table_of("mmengine_mmpose_sessions_train_then_test")["mmengine_mmpose_sessions_train_then_test"]
    assert "PCK 0.9728 (epoch 300)" in row and "(test)" not in row


def test_a_test_result_alone_is_shown_labelled_as_a_test():
    row = table_of("mmengine_test_rtmdet_coco_v0.7.3")["mmengine_test_rtmdet_coco_v0.7.3"]
    assert "coco/bbox_mAP 0.0030 (test)" in row


def test_the_status_page_shows_the_last_validation_and_labels_a_test_alone():
    from trainwarden.outputs.views.page import status_page

    result = run_cli("status", "--json", str(REAL / "mmengine_mmpose_sessions_train_then_test"),
                     str(REAL / "mmengine_test_rtmdet_coco_v0.7.3"))
    page = status_page(from_plain(StatusReport, json.loads(result.stdout))).decode("utf-8")
    assert "PCK 0.9728" in page and "PCK 0.9728 (test)" not in page
    assert "coco/bbox_mAP 0.0030 (test)" in page


def test_every_real_run_that_finished_shows_its_whole_progress():
    """mmcls 0.x's last train line is `Epoch [20][150/196]` (98.8 %), then `Saving checkpoint at 20 epochs`; a log
    without train lines (mmcls flower, mmdet 2.x balloon) still says 20 (10) epochs done: every finished run is at
    100 %, and an interrupted run at its real fraction (RetinaNet VOC: 4 of 5 epochs saved)."""
    from test_real_logs import TRUTHS

    runs = {r["run"]: r for r in json.loads(run_cli("status", "--json", str(REAL)).stdout)["runs"]}
    for truth in TRUTHS:
        run = runs[truth.run]
        if truth.state == "finished":
            assert run["progress_ratio"] == 1.0, truth.run
        else:
            assert 0 < run["progress_ratio"] < 1, truth.run
    assert runs["mmdet2x_retinanet_voc"]["progress_ratio"] == 0.8
    rows = table_of("mmcls0x_epoch_cifar10", "mmcls0x_epoch_flower")
    assert "epoch 20/20 [196/196] 100.0%" in rows["mmcls0x_epoch_cifar10"]
    assert "epoch 20/20 100.0%" in rows["mmcls0x_epoch_flower"]
