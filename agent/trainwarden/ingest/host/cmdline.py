"""What a process's command line says about the training it runs: which work dir it trains into, if any.

Pure: a command line (and what a run's config dump says) in, paths out; nothing is executed or read. The rules are
those of MMEngine's and mmcv's `tools/train.py`: `--work-dir X` (also `--work_dir`, `--work-dir=X`) wins, then
`work_dir=X` in `--cfg-options` / `--options`, then the config's own `work_dir`, then `./work_dirs/<config stem>`.
The config is the first `.py` argument after the script (`python -c CODE` has no script: the first `.py` argument).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Interpreter options that take a value (`python -W ignore tools/train.py ...`).
_VALUE_OPTIONS = {"-W", "-X", "--check-hash-based-pycs"}
# Launchers and wrappers: the training is the first script they are given, with its arguments after it.
_LAUNCHER_MODULES = {"torch.distributed.launch", "torch.distributed.run", "pdb", "cProfile", "profile", "debugpy",
                     "coverage", "py_spy", "viztracer", "memray"}
_LAUNCHER_SCRIPTS = {"torchrun", "torchrun-script", "launch", "coverage", "kernprof", "py-spy", "viztracer"}
# Scripts that read a config without training: OpenMMLab's tools/test.py, print_config.py, browse_dataset.py,
# analyze_logs.py, get_flops.py, benchmark.py, confusion_matrix.py, the demos, converters and visualisers
# (a script whose name says `train` is a training whatever else its name says).
_NOT_TRAINING = re.compile(
    r"^(?:(?:\w+_)?test(?:_\w+)?|print_config|browse_\w+|analy[sz]e_\w+|analysis_\w+|get_flops|flops\w*|benchmark\w*|"
    r"confusion_matrix|eval_metric|(?:\w+_)?demo(?:_\w+)?|inference\w*|infer\w*|publish_model|pytorch2\w+|mmdet2\w+|"
    r"deploy\w*|vis\w*|optimize_anchors|coco_error_analysis|robustness_eval|misc\w*|tensorboard|"
    r"convert\w*|export\w*|onnx\w*)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TrainingCommand:
    script: str | None  # the script's file or module name (None for `python -c`)
    config: str | None  # the first `.py` argument after the script, as written
    work_dir: str | None  # named on the command line (`--work-dir`, `--cfg-options work_dir=`), as written


def _norm(text: str) -> str:
    return text.strip("'\"")


def _base(text: str) -> str:
    return _norm(text).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _stem(text: str) -> str:
    base = _base(text)
    for suffix in (".py", ".exe", ".pyw"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def is_python(cmdline: list[str]) -> bool:
    return bool(cmdline) and "python" in _base(cmdline[0]).lower()


def _script_and_rest(args: list[str]) -> tuple[str | None, bool, list[str]] | None:
    """(script or module, it is a module, the arguments after it) of an interpreter's arguments."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-c":
            return None, False, args[i + 2:]
        if arg.startswith("-c") and not arg.startswith("--"):
            return None, False, args[i + 1:]  # `-cCODE`
        if arg == "-m":
            return (args[i + 1], True, args[i + 2:]) if i + 1 < len(args) else None
        if arg.startswith("-m") and not arg.startswith("--"):
            return arg[2:], True, args[i + 1:]
        if arg in _VALUE_OPTIONS:
            i += 2
            continue
        if arg.startswith("-") and arg != "-":
            i += 1
            continue
        return arg, False, args[i + 1:]
    return None  # an interactive interpreter


def training_command(cmdline: list[str]) -> TrainingCommand | None:
    """The training a Python command line runs, or None (not Python, or a tool that does not train)."""
    if not is_python(cmdline):
        return None
    found = _script_and_rest(cmdline[1:])
    if found is None:
        return None
    script, is_module, rest = found
    while script is not None and (script in _LAUNCHER_MODULES if is_module else _stem(script) in _LAUNCHER_SCRIPTS):
        scripts = [i for i, a in enumerate(rest) if _norm(a).lower().endswith(".py")]
        if not scripts:
            return None  # a launcher given no script we can read
        script, is_module, rest = rest[scripts[0]], False, rest[scripts[0] + 1:]
    if script is not None:
        name = script.rsplit(".", 1)[-1] if is_module else _stem(script)
        trains = "train" in name.lower() and not name.lower().startswith("trainwarden")
        if name.lower().startswith("trainwarden") or (not trains and _NOT_TRAINING.match(name)):
            return None  # our own commands name work dirs too; a script called *train* trains, whatever else
    config = next((_norm(a) for a in rest if _norm(a).lower().endswith(".py") and not a.startswith("-")), None)
    return TrainingCommand(script, config, _named_work_dir(rest))


def _named_work_dir(args: list[str]) -> str | None:
    named = from_options = None
    in_options = False
    for i, arg in enumerate(args):
        key, eq, value = arg.partition("=")
        if key in ("--work-dir", "--work_dir"):
            if eq:
                named = _norm(value)
            elif i + 1 < len(args):
                named = _norm(args[i + 1])
            in_options = False
        elif arg in ("--cfg-options", "--cfg_options", "--options"):
            in_options = True
        elif arg.startswith("-"):
            in_options = False
        elif in_options and key == "work_dir" and eq:
            from_options = _norm(value)
    return named or from_options


def work_dir_candidates(command: TrainingCommand, dump_config_name: str | None,
                        dump_work_dir: str | None) -> list[str]:
    """The work dir the command trains into, as written (relative to the process's working folder or absolute).

    A command that names none trains into the config's own `work_dir` (known from the run's config dump, when the
    command names a config of that file name), else into `work_dirs/<config stem>`."""
    if command.work_dir:
        return [command.work_dir]
    if command.config is None:
        return []
    if dump_work_dir and dump_config_name and _base(command.config) == dump_config_name:
        return [dump_work_dir]
    return [f"work_dirs/{_stem(command.config)}"]
