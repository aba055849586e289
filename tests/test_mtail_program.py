"""The mtail program of the peer benchmark (bench/mtail/trainwarden.mtail), run by the real mtail: it extracts the
values trainwarden exports for the same logs (the ones `trainwarden status` reports for these fixtures), so the
benchmark compares like with like. mtail missing is a failure, not a skip: tests/run-all.sh installs it.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, wait_for
from prometheus_client.parser import text_string_to_metric_families
from stack import first_lines, line

ROOT = Path(__file__).resolve().parent.parent
PROGS = ROOT / "bench" / "mtail"
REAL = Path(__file__).parent / "fixtures" / "real-logs"
EPOCH_LOG = REAL / "mmengine_epoch_rtmdet_coco_v0.7.3" / "20230611_194513" / "20230611_194513.log"
ITER_LOG = REAL / "mmengine_iter_mmseg_v0.7.3" / "20230616_181232.log"
TEST_LOG = REAL / "mmengine_test_rtmdet_coco_v0.7.3" / "20230611_201106" / "20230611_201106.log"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def mtail() -> str:
    path = shutil.which("mtail")
    assert path, "mtail is not installed (Debian package `mtail`; tests/run-all.sh installs it)"
    return path


def samples(exposition: str) -> Samples:
    """(name, labels other than `log` and `prog`) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("log", "prog")))
            out[(s.name, labels)] = s.value
    return out


def one_shot(log: Path) -> Samples:
    result = subprocess.run([mtail(), "--one_shot", "--one_shot_format", "prometheus", "--progs", str(PROGS),
                             "--logs", str(log), "--logtostderr"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return samples(result.stdout)


def train_names(got: Samples) -> set[str]:
    return {name for name, _ in got if name.startswith("train_")}


def test_epoch_based_run():
    got = one_shot(EPOCH_LOG)
    assert got[("train_epoch", ())] == 200
    assert got[("train_max_epochs", ())] == 200
    assert got[("train_iteration", ())] == 800  # [200][4/4]: 199 epochs of 4 iterations before this one
    assert got[("train_max_iterations", ())] == 800
    assert got[("train_learning_rate", ())] == pytest.approx(1.0003e-04)
    assert got[("train_loss", ())] == 0
    assert got[("train_loss_component", (("component", "loss_cls"),))] == 0
    assert got[("train_loss_component", (("component", "loss_bbox"),))] == 0
    assert got[("eval_metric", (("key", "coco/bbox_mAP"), ("mode", "val")))] == pytest.approx(0.007)
    assert got[("eval_metric", (("key", "coco/bbox_mAP_50"), ("mode", "val")))] == pytest.approx(0.013)
    assert got[("eval_epoch", ())] == 200
    assert got[("eval_best", (("key", "coco/bbox_mAP"),))] == pytest.approx(0.009)  # epoch 100's, not the last
    assert got[("checkpoint_last_epoch", ())] == 200
    assert got[("checkpoints_saved_total", ())] == 40  # every 5 epochs


def test_iteration_based_run():
    got = one_shot(ITER_LOG)
    assert ("train_epoch", ()) not in got
    assert got[("train_iteration", ())] == 3000
    assert got[("train_max_iterations", ())] == 3000
    assert got[("train_loss", ())] == pytest.approx(0.0294)
    assert got[("train_loss_component", (("component", "decode.loss_ce"),))] == pytest.approx(0.0207)
    assert got[("train_loss_component", (("component", "aux.loss_ce"),))] == pytest.approx(0.0087)
    assert got[("train_learning_rate", ())] == pytest.approx(0.0093294)
    assert got[("eval_metric", (("key", "mIoU"), ("mode", "val")))] == pytest.approx(62.51)
    assert got[("eval_metric", (("key", "aAcc"), ("mode", "val")))] == pytest.approx(89.72)
    assert got[("eval_best", (("key", "aAcc"),))] == pytest.approx(90.32)
    assert got[("checkpoint_last_iteration", ())] == 3000
    assert ("checkpoint_last_epoch", ()) not in got


def test_test_run_has_metrics_and_no_training():
    got = one_shot(TEST_LOG)
    assert got[("eval_metric", (("key", "coco/bbox_mAP"), ("mode", "test")))] == pytest.approx(0.003)
    assert train_names(got) == {"train_max_epochs"}  # only the config dump's max_epochs


def test_the_benchmark_shapes_grad_norm_voc_and_nan(tmp_path):
    """The lines bench/peer_figures.py writes (tests/stack.py), which the real logs lack: grad_norm, acc, the VOC
    metric, and a diverged `loss: nan`."""
    log = tmp_path / "run.log"
    text = first_lines() + line(300, 0.25, epoch=2)
    text += line(400, 0.0, epoch=2).replace("loss: 0.0000", "loss: nan")
    log.write_text(text, encoding="utf-8")
    got = one_shot(log)
    assert got[("train_epoch", ())] == 2
    assert got[("train_max_epochs", ())] == 5
    assert got[("train_iteration", ())] == 1400
    assert got[("train_max_iterations", ())] == 5000
    assert got[("train_grad_norm", ())] == 6.5
    assert math.isnan(got[("train_loss", ())])
    assert got[("train_loss_component", (("component", "loss_cls"),))] == pytest.approx(0.12)
    assert got[("eval_metric", (("key", "pascal_voc/mAP"), ("mode", "val")))] == pytest.approx(0.59)
    assert got[("eval_epoch", ())] == 1
    assert got[("checkpoint_last_epoch", ())] == 1


def test_follows_appended_lines_through_the_benchmarks_glob(tmp_path):
    """Started as the benchmark starts it: a glob over the runs, a line appended shows in /metrics. mtail starts at
    the end of the files it finds (their history is not read), so the first value comes from the appended line."""
    log = tmp_path / "work_dirs" / "run00" / "20251111_180600" / "20251111_180600.log"
    log.parent.mkdir(parents=True)
    log.write_text(first_lines(), encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen([mtail(), "--progs", str(PROGS), "--logs", str(tmp_path / "work_dirs" / "*" / "*" / "*.log"),
                             "--address", "127.0.0.1", "--port", str(port), "--logtostderr"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def loss() -> float | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return samples(r.read().decode()).get(("train_loss", ()))

    try:
        wait_for(lambda: str(log) in opened_logs(port), timeout=20)  # found, and at its end: appends now count
        assert loss() is None
        with log.open("a", encoding="utf-8") as f:
            f.write(line(300, 0.4321))
        assert wait_for(lambda: loss() == 0.4321, timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def opened_logs(port: int) -> dict[str, int]:
    """The files mtail has opened (its expvar `log_opens_total`); empty while it is not yet listening."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/vars", timeout=2) as r:
            return json.loads(r.read()).get("log_opens_total") or {}
    except OSError:
        return {}
