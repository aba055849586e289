"""Real MMEngine 0.10 trainings on CPU (tests/trainings/scripted.py: scripted losses and mAP, everything else
MMEngine's own) watched live by `trainwarden watch`, and one under `trainwarden run`, each with a local json://
sink: every training gets exactly the pages it should, once, with the apprise type of its severity, and a healthy
run gets none in red or yellow. Then `status --json` on the logs one run of the same scripts wrote
(tests/fixtures/mmengine-live, made by tests/trainings/make_fixtures.py).

The policy is the default one: what holds for any training, nothing of one project's guide."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FIXTURES, free_port, run_cli, wait_for

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "trainings" / "scripted.py"
LIVE = FIXTURES / "mmengine-live"
# the notification's marker -> the apprise notify type a channel colours it by (issue 12, finding 6)
APPRISE_TYPE = {"RED": "failure", "YELLOW": "warning", "INFO": "info", "RESOLVED": "success"}
RANK = {"success": 0, "info": 0, "warning": 1, "failure": 2}
TITLE = re.compile(r"^\[(RED|YELLOW|INFO|RESOLVED)\] (\w+) - (.+?) on ")
ENDED = {"finished", "early_stopped", "crashed", "ended", "interrupted", "stalled"}


@pytest.fixture(scope="module", autouse=True)
def trainers_installed():
    """The live checks need torch and mmengine: missing, they fail (the dev extra installs them), never skip."""
    missing = [m for m in ("torch", "mmengine") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: pip install torch==2.13.0 -e '.[dev]' (the trainers extra)")


@dataclass(frozen=True)
class Page:
    marker: str  # RED, YELLOW, INFO or RESOLVED
    alert: str
    run: str
    apprise_type: str | None  # of the message it came in (a combined message: the combined one's)


def pages(sink) -> list[Page]:
    """Every notification the sink received, those inside combined messages too."""
    out = []
    for m in list(sink.received):
        title, kind = m.get("title", ""), m.get("type")
        if title.startswith("[trainwarden] ") and " notifications: " in title:
            titles = re.findall(r"^== (.+?) \(\d{4}-", m.get("message", ""), re.MULTILINE)
        else:
            titles = [title]
        for t in titles:
            found = TITLE.match(t)
            assert found, f"a notification title of an unknown shape: {t!r}"
            out.append(Page(found[1], found[2], found[3], kind))
    return out


def shown(sink) -> str:
    """The pages in order, one a line, for an assertion's message."""
    return "\n" + "\n".join(f"{p.marker} {p.alert} - {p.run} ({p.apprise_type})" for p in pages(sink))


def red(sink) -> Counter:
    return Counter(p.alert for p in pages(sink) if p.marker == "RED")


def yellow(sink) -> Counter:
    return Counter(p.alert for p in pages(sink) if p.marker == "YELLOW")


def count(sink, marker: str, alert: str) -> int:
    return sum(1 for p in pages(sink) if p.marker == marker and p.alert == alert)


def assert_pages_sound(sink) -> None:
    """What holds for every training: a message goes out with the apprise type of its severity (a combined one
    with its worst member's); no alert pages again while it is still active; a resolved notice only follows its
    own page."""
    for m in list(sink.received):
        title = m.get("title", "")
        if title.startswith("[trainwarden] ") and " notifications: " in title:
            members = [APPRISE_TYPE[x] for x in re.findall(r"^== \[(RED|YELLOW|INFO|RESOLVED)\]", m["message"], re.M)]
            worst = max(members, key=RANK.__getitem__)
            assert RANK.get(m.get("type")) == RANK[worst], f"{title}: type {m.get('type')}, worst member {worst}"
        else:
            marker = TITLE.match(title)[1]
            assert m.get("type") == APPRISE_TYPE[marker], f"{title}: apprise type {m.get('type')}"
    active: set[tuple[str, str]] = set()
    for page in pages(sink):
        key = (page.alert, page.run)
        if page.marker in ("RED", "YELLOW"):
            assert key not in active, f"{page.alert} paged twice for {page.run} while active: {shown(sink)}"
            active.add(key)
        elif page.marker == "RESOLVED":
            assert key in active, f"{page.alert} resolved for {page.run} without its page: {shown(sink)}"
            active.discard(key)


class Watch:
    """`trainwarden watch ROOT` in its own process, notifying the sink (standalone mode, the default policy)."""

    def __init__(self, root: Path, sink, state: Path, started: list) -> None:
        root.mkdir(parents=True, exist_ok=True)
        config = state.parent / "trainwarden.yml"
        config.write_text(f"notify:\n  host: box\n  state_dir: {state}\n  resolve_after_seconds: 0\n"
                          f"  max_per_minute: 100\n  targets:\n    - url: {sink.url()}\n", encoding="utf-8")
        self.base = f"http://127.0.0.1:{free_port()}"
        self.stderr = state.parent / "watch.stderr"
        with self.stderr.open("w", encoding="utf-8") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "trainwarden", "watch", str(root), "--config.file",
                                          str(config), "--web.listen-address", self.base.removeprefix("http://")],
                                         stdout=subprocess.DEVNULL, stderr=err)
        started.append(self)  # stopped at the end of the test whatever happens next

    def wait_up(self) -> None:
        wait_for(self._up, timeout=60, interval=0.2)

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(self.base + path, timeout=10) as r:
            return r.read().decode("utf-8")

    def _up(self) -> bool:
        try:
            return self._get("/healthz").strip() == "ok"
        except OSError:
            return False

    def run(self, name: str) -> dict | None:
        return next((r for r in json.loads(self._get("/api/runs"))["runs"] if r["run"] == name), None)

    def queue_length(self) -> float:
        line = next(x for x in self._get("/metrics").splitlines() if x.startswith("trainwarden_notification_queue_length"))
        return float(line.split()[-1])

    def settled(self, name: str, states: set[str], timeout: float = 90) -> dict:
        """The run has ended (its process gone, its state one of `states`) and every notification is out, on three
        polls in a row: what the agent will say about it has been said."""
        streak = []

        def quiet() -> dict | None:
            run = self.run(name)
            done = (run is not None and run["state"] in states and not (run["process"] or {}).get("up")
                    and self.queue_length() == 0)
            streak.append(done)
            return run if len(streak) >= 3 and all(streak[-3:]) else None

        return wait_for(quiet, timeout=timeout, interval=0.5)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        err = self.stderr.read_text(encoding="utf-8")
        assert "Traceback" not in err, err


@pytest.fixture
def watch(tmp_path, sink):
    started = []

    def _start() -> Watch:
        agent = Watch(tmp_path / "work_dirs", sink, tmp_path / "state", started)
        agent.wait_up()
        return agent

    yield _start
    for w in started:
        w.stop()


@dataclass
class Training:
    """scripted.py in its own process; its console goes to a file beside the work dir (as nohup would keep it)."""

    proc: subprocess.Popen
    console: Path

    def finish(self, code: int = 0) -> None:
        got = self.proc.wait(timeout=180)
        assert got == code, f"exit {got}:\n" + self.console.read_text(encoding="utf-8")[-3000:]


STARTED: list[Training] = []


@pytest.fixture(autouse=True)
def no_training_left_behind():
    """A test that fails half-way leaves no training running into the next one."""
    yield
    while STARTED:
        training = STARTED.pop()
        if training.proc.poll() is None:
            training.proc.kill()
            training.proc.wait(timeout=30)


def train(work_dir: Path, scenario: str, build: str = "cfg", *extra: str, step: float | None = None) -> Training:
    """`step`: the seconds each iteration sleeps; scripted.py's own (0.2 s: an epoch of 2 s, whose eta tells the
    last epoch) unless a test needs the run faster or slower."""
    work_dir.parent.mkdir(parents=True, exist_ok=True)
    console = work_dir.parent / f"{work_dir.name}.console"
    steps = () if step is None else ("--step-seconds", str(step))
    with console.open("a", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, str(SCRIPT), "--work-dir", str(work_dir), "--scenario", scenario,
                                 "--build", build, *steps, *extra], stdout=out, stderr=out)
    STARTED.append(Training(proc, console))
    return STARTED[-1]


# -- live: watched while they train -----------------------------------------------------------------------------

@pytest.mark.parametrize("build", ["cfg", "python"])
def test_a_healthy_training_pages_nothing_red(tmp_path, sink, watch, build):
    """Runner.from_cfg (config in the log, dumped beside it) and a Runner built in Python (no config anywhere): a
    loss falling from 2.4 and an mAP rising to 0.405 over 5 epochs end `finished` with no red and no yellow page
    (findings 2 and 4: neither a normal end without a config dump nor a first loss above 1 is a fault)."""
    agent = watch()
    wd = tmp_path / "work_dirs" / f"healthy_{build}"
    train(wd, "healthy", build).finish()
    run = agent.settled(wd.name, ENDED)
    assert run["state"] == "finished", run["conditions"]
    assert red(sink) == Counter() and yellow(sink) == Counter(), shown(sink)
    assert run["health"] != "red" and run["epoch"] == 5 and len(run["evaluations"]) == 5
    assert_pages_sound(sink)
    assert run_cli("status", str(wd)).returncode == 0


def test_a_loss_explosion_pages_once(tmp_path, sink, watch):
    """The loss goes from ~0.8 to 40 and more in epoch 3 and stays there: one TrainingLossExplosion, red."""
    agent = watch()
    wd = tmp_path / "work_dirs" / "explosion"
    train(wd, "explosion").finish()
    agent.settled(wd.name, ENDED)
    assert red(sink) == Counter({"TrainingLossExplosion": 1}), shown(sink)
    assert_pages_sound(sink)


def test_a_nan_loss_pages_once(tmp_path, sink, watch):
    """From iteration 18 on the loss is nan (the training goes on, as MMEngine does): one TrainingLossNotFinite."""
    agent = watch()
    wd = tmp_path / "work_dirs" / "nan"
    train(wd, "nan", "python").finish()
    run = agent.settled(wd.name, ENDED)
    assert red(sink) == Counter({"TrainingLossNotFinite": 1}), shown(sink)
    assert run["loss"] is None and "loss" in run["nonfinite"]
    assert_pages_sound(sink)


def test_early_stopping_is_news_not_a_page(tmp_path, sink, watch):
    """EarlyStoppingHook stops at epoch 4 of 8: `early_stopped`, one TrainingEarlyStopped (info), no red (the
    process that exits before max_epochs is not a crash)."""
    agent = watch()
    wd = tmp_path / "work_dirs" / "earlystop"
    train(wd, "earlystop").finish()
    run = agent.settled(wd.name, ENDED)
    assert run["state"] == "early_stopped" and run["epoch"] == 4 and run["max_epochs"] == 8
    assert red(sink) == Counter(), shown(sink)
    assert count(sink, "INFO", "TrainingEarlyStopped") == 1, shown(sink)
    assert_pages_sound(sink)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_training_killed_mid_epoch_pages_once(tmp_path, sink, watch):
    """SIGKILL while the agent watches, once it has seen the process and epoch 2: one TrainingProcessExited, red."""
    agent = watch()
    wd = tmp_path / "work_dirs" / "killed"
    training = train(wd, "healthy", "python")
    wait_for(lambda: (r := agent.run(wd.name)) and (r["process"] or {}).get("up") and (r["epoch"] or 0) >= 2,
             timeout=120, interval=0.2)
    training.proc.send_signal(signal.SIGKILL)  # in epoch 2 (or 3 on a slow machine) of 5
    training.finish(-signal.SIGKILL)
    run = agent.settled(wd.name, ENDED)
    assert run["state"] == "crashed" and run["epoch"] < 5
    assert red(sink) == Counter({"TrainingProcessExited": 1}), shown(sink)
    assert_pages_sound(sink)


def test_a_cuda_oom_under_run_pages_once(tmp_path, sink):
    """`trainwarden run` around a training whose hook raises torch.cuda.OutOfMemoryError in epoch 2: the real
    traceback reaches the terminal and the console capture, and the OOM is paged once, red."""
    wd = tmp_path / "work_dirs" / "oom"
    config = tmp_path / "cfg.yml"
    config.write_text(f"notify:\n  state_dir: {tmp_path / 'state'}\n  resolve_after_seconds: 0\n", encoding="utf-8")
    result = run_cli("run", "--config.file", str(config), "--notify", sink.url(), "--", sys.executable, str(SCRIPT),
                     "--work-dir", str(wd), "--scenario", "oom", timeout=180)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB" in result.stderr
    assert "Traceback (most recent call last):" in next(wd.glob("trainwarden-console-*.log")).read_text(encoding="utf-8")
    reds = red(sink)
    assert reds["TrainingCUDAOutOfMemory"] == 1, shown(sink)
    assert set(reds) <= {"TrainingCUDAOutOfMemory", "TrainingProcessExited"} and max(reds.values()) == 1, shown(sink)
    assert_pages_sound(sink)


def test_a_crash_then_resume_pages_then_resolves(tmp_path, sink, watch):
    """A RuntimeError in epoch 3 (after epoch 2's checkpoint): one TrainingProcessExited, red; `resume=True` then
    trains on from epoch 3: that page is resolved (apprise type success) and the run finishes with no other red."""
    agent = watch()
    wd = tmp_path / "work_dirs" / "crash"
    train(wd, "crash").finish(1)
    wait_for(lambda: count(sink, "RED", "TrainingProcessExited") == 1, timeout=90, interval=0.2)
    train(wd, "healthy", "cfg", "--resume").finish()
    run = agent.settled(wd.name, ENDED)
    assert run["state"] == "finished" and run["epoch"] == 5 and len(run["sessions"]) == 2
    wait_for(lambda: count(sink, "RESOLVED", "TrainingProcessExited") == 1, timeout=30, interval=0.2)
    assert red(sink) == Counter({"TrainingProcessExited": 1}), shown(sink)
    assert count(sink, "RESOLVED", "TrainingProcessExited") == 1, shown(sink)
    assert_pages_sound(sink)


def test_a_second_training_into_the_same_work_dir_is_the_run_again(tmp_path, sink, watch):
    """A finished run, then the same training again into its work dir without resume (MMEngine's default
    `work_dirs/<config>` makes that common): the run is `running` with the new attempt's progress, not the old
    attempt's `finished` at epoch 5; both attempts are sessions; no red at any point (finding 9)."""
    agent = watch()
    wd = tmp_path / "work_dirs" / "again"
    train(wd, "healthy", step=0.02).finish()
    first = agent.settled(wd.name, ENDED)
    assert first["state"] == "finished" and first["epoch"] == 5
    second = train(wd, "healthy")
    seen = wait_for(lambda: (r := agent.run(wd.name)) and len(r["sessions"]) == 2 and r["epoch"] in (2, 3, 4) and r,
                    timeout=120, interval=0.2)
    assert seen["state"] == "running", (seen["state"], seen["epoch"])
    assert len(seen["evaluations"]) < 5  # the new attempt's, not both attempts' mixed
    second.finish()
    run = agent.settled(wd.name, ENDED)
    assert run["state"] == "finished" and run["epoch"] == 5 and len(run["evaluations"]) == 5
    assert red(sink) == Counter(), shown(sink)
    assert_pages_sound(sink)


# -- the logs one run of the same scripts wrote -------------------------------------------------------------------

# What each fixture says, read by hand in its log (written on 2026-12-01, a day later history: quiet for longer
# than a day). What holds whenever they are read: a run that ended normally is `finished` or `early_stopped` and
# never red; the progress, the evaluations, the best and the newest checkpoint are the log's.
FIXTURE_FACTS = {
    "healthy_from_cfg": {"state": "finished", "epoch": 5, "max_epochs": 5, "evaluations": 5, "last": 0.405,
                         "best": ("coco/bbox_mAP", 0.405, "best_coco_bbox_mAP_epoch_5.pth"), "config": "scripted_config.py",
                         "newest": "epoch_5.pth", "red": False},
    "healthy_in_python": {"state": "finished", "epoch": 5, "max_epochs": None, "evaluations": 5, "last": 0.405,
                          "best": ("coco/bbox_mAP", 0.405, None), "newest": "epoch_5.pth", "config": None, "red": False},
    # the same run at 2 ms an iteration: every train line reads `eta: 0:00:00`, so its log cannot tell its end
    "healthy_in_python_too_fast": {"state": "ended", "epoch": 5, "max_epochs": None, "evaluations": 5, "last": 0.405,
                                   "newest": "epoch_5.pth", "config": None, "red": False},
    # stopped by EarlyStoppingHook: as history it may read as finished, never as interrupted
    "early_stop": {"state": {"early_stopped", "finished"}, "epoch": 4, "max_epochs": 8, "evaluations": 4, "last": 0.307,
                   "best": ("coco/bbox_mAP", 0.309, "best_coco_bbox_mAP_epoch_3.pth"), "config": "scripted_config.py",
                   "newest": "epoch_4.pth", "red": False},
    "crash_then_resume": {"state": "finished", "epoch": 5, "max_epochs": 5, "evaluations": 5, "last": 0.405,
                          "best": ("coco/bbox_mAP", 0.405, "best_coco_bbox_mAP_epoch_5.pth"), "sessions": 2,
                          "config": "scripted_config.py", "newest": "epoch_5.pth", "red": False},
    "second_training": {"state": "finished", "epoch": 5, "max_epochs": 5, "evaluations": 5, "last": 0.405,
                        "best": ("coco/bbox_mAP", 0.405, "best_coco_bbox_mAP_epoch_5.pth"), "sessions": 2,
                        "config": "scripted_config.py", "newest": "epoch_5.pth", "red": False},
    "loss_explosion": {"epoch": 5, "evaluations": 5, "last": 0.306, "newest": "epoch_5.pth"},
    "loss_nan": {"epoch": 5, "evaluations": 5, "last": 0.305, "newest": "epoch_5.pth", "nonfinite": ["loss"]},
    # SIGKILLed at epoch 3, iteration 4 of 10: epoch 2's checkpoint and validation are the last; stalled while
    # the log is younger than a day, history (interrupted) after
    "killed_mid_epoch": {"state": {"stalled", "interrupted"}, "epoch": 3, "epoch_iteration": 4, "evaluations": 2, "last": 0.305,
                         "newest": "epoch_2.pth"},
    # the OOM in epoch 2 before its 5th iteration: the last train line is epoch 2, iteration 4
    "cuda_oom_under_run": {"epoch": 2, "epoch_iteration": 4, "evaluations": 1, "last": 0.212, "newest": "epoch_1.pth",
                           "oom": 1},
}


@pytest.fixture(scope="module")
def fixture_documents() -> dict[str, dict]:
    result = run_cli("status", "--json", *(str(LIVE / name) for name in FIXTURE_FACTS))
    return {r["run"]: r for r in json.loads(result.stdout)["runs"]}


@pytest.mark.parametrize("name", sorted(FIXTURE_FACTS))
def test_status_on_the_logs_the_trainings_wrote(name, fixture_documents):
    facts, run = FIXTURE_FACTS[name], fixture_documents[name]
    for key in ("state", "epoch", "max_epochs", "epoch_iteration", "config", "nonfinite"):
        if key in facts:
            want = facts[key]
            assert run[key] in want if isinstance(want, set) else run[key] == want, (key, run[key])
    assert len(run["evaluations"]) == facts["evaluations"]
    assert run["evaluations"][-1]["metrics"]["coco/bbox_mAP"] == pytest.approx(facts["last"])
    assert Path(run["newest_checkpoint"]).name == facts["newest"]
    if "best" in facts:
        key, value, checkpoint = facts["best"]
        assert (run["best"]["key"], run["best"]["value"]) == (key, pytest.approx(value))
        if checkpoint:
            assert run["best"]["checkpoint"] == checkpoint
    if "sessions" in facts:
        assert len(run["sessions"]) == facts["sessions"]
    if "oom" in facts:
        assert run["log"]["errors_total"]["cuda_oom"] == facts["oom"]
    if facts.get("red") is False:
        assert run["health"] != "red", run["conditions"]


def test_a_log_that_cannot_tell_its_end_reads_ended_yellow_never_red(tmp_path):
    """A Runner built in Python (no length anywhere) whose epochs take 20 ms: `eta: 0:00:00` on every train line,
    so nothing says whether epoch 5 was the last. Judged as if watched while it ran (not history), it is `ended`
    with the TrainingEndedUnconfirmed warning, never red; the same training at 0.2 s an iteration is `finished`."""
    config = tmp_path / "trainwarden.yml"
    config.write_text("policy:\n  history_after_seconds: 1.0e+12\n", encoding="utf-8")
    result = run_cli("status", "--json", "--config.file", str(config), str(LIVE / "healthy_in_python_too_fast"),
                     str(LIVE / "healthy_in_python"))
    runs = {r["run"]: r for r in json.loads(result.stdout)["runs"]}
    fast, timed = runs["healthy_in_python_too_fast"], runs["healthy_in_python"]
    assert (fast["state"], fast["health"]) == ("ended", "yellow"), fast["conditions"]
    assert [(c["alert"], c["severity"]) for c in fast["conditions"]] == [("TrainingEndedUnconfirmed", "warning")]
    assert (timed["state"], timed["health"]) == ("finished", "green"), timed["conditions"]
    assert result.returncode == 0


def test_status_exits_0_on_the_runs_that_ended_normally():
    """History is not a page: the runs that finished or stopped early make `status` exit 0 (finding 3)."""
    names = [n for n, f in FIXTURE_FACTS.items() if f.get("red") is False]
    result = run_cli("status", *(str(LIVE / n) for n in names))
    assert result.returncode == 0, result.stdout
