"""The package's import layers, read from the code: every module of agent/trainwarden is parsed with `ast`, its
imports resolved (absolute and relative, at module level or inside functions, and `importlib.import_module` of a
constant name), and an import a layer may not make fails with the list of them.

The table below is the one statement of the layers; docs/architecture.md shows the same table. A module's layer
is the first component of its name under `trainwarden` (`trainwarden.model.snapshot` is `model`,
`trainwarden.judge.rules.loss` is `judge`), so new modules inside a package need no change here.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "agent" / "trainwarden"

# Anyone may import these: the package root (`__version__`), the record types, the errors the CLI maps to exit codes.
ANYONE = frozenset({"trainwarden", "model", "errors"})

# Layer -> the other layers its modules may import (besides ANYONE and itself). Lowest first:
#   model, errors  <  parse ; state ; judge  <  ingest  <  outputs  <  app  <  cli
MAY_IMPORT: dict[str, frozenset[str]] = {
    "trainwarden": frozenset(),
    "model": frozenset(),
    "errors": frozenset(),
    "parse": frozenset(),  # pure line parsers: line in, record out
    "state": frozenset(),  # folds records into a run's state
    "judge": frozenset(),  # pure: snapshot, policy and the time in; judgement out
    "ingest": frozenset({"parse", "state"}),  # files and host sources feed parsers and state
    "outputs": frozenset({"judge"}),  # status document, metrics, notifications, views: never ingest, app or cli
    "app": frozenset({"parse", "state", "judge", "ingest", "outputs"}),  # wiring: anything but cli
    "cli": frozenset({"parse", "state", "judge", "ingest", "outputs", "app"}),
}

# Modules whose layer is not their first name component: `python -m trainwarden` is the command line's entry point.
LAYER_OVERRIDES = {"__main__": "cli"}

# Modules a pure layer may not import: the file system, processes, threads, the network, devices, servers.
PURE_LAYERS = ("parse", "judge")
IMPURE_MODULES = frozenset({
    "os", "io", "shutil", "tempfile", "glob", "socket", "ssl", "select", "selectors", "signal", "subprocess",
    "threading", "multiprocessing", "concurrent", "asyncio", "http", "urllib", "requests", "psutil", "pynvml",
    "watchdog", "apprise", "prometheus_client", "rich", "yaml",
})


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    target: str  # the module imported, e.g. trainwarden.ingest.reader or os.path


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module under the package."""
    return {module_name(p, package): p for p in sorted(package.rglob("*.py")) if "__pycache__" not in p.parts}


def layer_of(module: str) -> str | None:
    """`trainwarden.judge.rules.loss` -> `judge`; `trainwarden` -> `trainwarden`; None outside the package."""
    parts = module.split(".")
    if parts[0] != "trainwarden":
        return None
    if len(parts) == 1:
        return "trainwarden"
    return LAYER_OVERRIDES.get(parts[1], parts[1])


def _relative_base(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The module `from <level dots><name> import ...` names, seen from `module`."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        package = package[: len(package) - (level - 1)]
    return ".".join([*package, name] if name else package)


def imports_of(source: str, file: Path, module: str, is_package: bool, known: set[str]) -> list[Import]:
    """Every module `source` imports: module level, inside functions and conditionals, relative or absolute, and
    `importlib.import_module` / `__import__` of a constant name."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, filename=str(file))):
        if isinstance(node, ast.Import):
            found += [Import(file, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _relative_base(module, is_package, node.level, node.module) if node.level else (node.module or "")
            for alias in node.names:
                # `from trainwarden import cli` imports the package trainwarden.cli, not a name of trainwarden
                submodule = f"{base}.{alias.name}"
                found.append(Import(file, node.lineno, submodule if submodule in known else base))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in ("import_module", "__import__") and not node.args[0].value.startswith("."):
                found.append(Import(file, node.lineno, node.args[0].value))
    return found


def all_imports(package: Path = PACKAGE) -> list[tuple[str, Import]]:
    modules = package_modules(package)
    known = set(modules)
    out = []
    for name, path in modules.items():
        source = path.read_text(encoding="utf-8")
        out += [(name, imp) for imp in imports_of(source, path, name, path.name == "__init__.py", known)]
    return out


def upward_imports(imports: list[tuple[str, Import]]) -> list[str]:
    """One line per import that its module's layer may not make."""
    problems = []
    for module, imp in imports:
        source, target = layer_of(module), layer_of(imp.target)
        if target is None or target in ANYONE or target == source:
            continue
        allowed = MAY_IMPORT.get(source, frozenset())
        if target not in allowed:
            may = ", ".join(sorted({*ANYONE, source, *allowed}))
            problems.append(f"{_shown(imp.file)}:{imp.line}: {module} ({source}) imports {imp.target} ({target}); "
                            f"{source} may import only {may}")
    return problems


def _shown(path: Path) -> str:
    try:
        return path.relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


# -- the package ---------------------------------------------------------------------------------------------------
def test_every_module_belongs_to_a_layer():
    modules = package_modules()
    assert len(modules) > 40, f"found only {len(modules)} modules under {PACKAGE}"
    unknown = sorted(f"{_shown(path)}: layer {layer_of(name)!r}" for name, path in modules.items()
                     if layer_of(name) not in MAY_IMPORT)
    assert not unknown, "modules outside the layer table (add their layer to MAY_IMPORT in tests/test_layers.py " \
                        "and to docs/architecture.md):\n" + "\n".join(unknown)


def test_no_module_imports_upward():
    imports = all_imports()
    assert any(layer_of(imp.target) == "judge" for _, imp in imports), "the resolver found no import at all"
    problems = upward_imports(imports)
    assert not problems, "imports against the layers (docs/architecture.md):\n" + "\n".join(problems)


def test_nothing_outside_cli_imports_cli():
    outside = [f"{_shown(imp.file)}:{imp.line}: {module} imports {imp.target}" for module, imp in all_imports()
               if layer_of(imp.target) == "cli" and layer_of(module) != "cli"]
    assert not outside, "only the command line imports the command line:\n" + "\n".join(outside)


def test_pure_layers_import_no_io():
    problems = [f"{_shown(imp.file)}:{imp.line}: {module} imports {imp.target}" for module, imp in all_imports()
                if layer_of(module) in PURE_LAYERS and imp.target.split(".")[0] in IMPURE_MODULES]
    assert not problems, f"{' and '.join(PURE_LAYERS)} stay pure (no files, processes, threads, network):\n" + \
        "\n".join(problems)


def test_the_table_only_points_down():
    """No two layers may import each other, directly or through others: the flow runs one way."""
    def reachable(layer: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out: set[str] = set()
        for lower in MAY_IMPORT[layer] - seen:
            out |= {lower, *reachable(lower, seen | {layer})}
        return out

    cycles = sorted(layer for layer in MAY_IMPORT if layer in reachable(layer))
    assert not cycles, f"layers that can import themselves through others: {cycles}"
    assert all("cli" not in allowed for allowed in MAY_IMPORT.values())


# -- the checker itself: it finds what it must --------------------------------------------------------------------
def _synthetic_imports(tmp_path: Path, relative: str, source: str) -> list[tuple[str, Import]]:
    package = tmp_path / "trainwarden"
    for rel in ("__init__.py", "errors.py", "parse/__init__.py", "parse/stream.py", "ingest/__init__.py",
                "ingest/reader.py", "judge/__init__.py", "judge/rules/__init__.py", "cli/__init__.py", "cli/main.py",
                "outputs/__init__.py", "outputs/status.py", "app/__init__.py", "app/web.py", relative):
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).touch()
    (package / relative).write_text(source, encoding="utf-8")
    return [(m, i) for m, i in all_imports(package) if i.file == package / relative]


@pytest.mark.parametrize(("relative", "source", "target"), [
    ("parse/new.py", "from ..ingest import reader\n", "trainwarden.ingest.reader"),
    ("parse/new.py", "from ..ingest.reader import RunReader\n", "trainwarden.ingest.reader"),
    ("parse/__init__.py", "from ..outputs import status\n", "trainwarden.outputs.status"),
    ("judge/rules/loss.py", "def f():\n    import trainwarden.app.web\n", "trainwarden.app.web"),
    ("judge/rules/loss.py", "from ... import cli\n", "trainwarden.cli"),
    ("outputs/new.py", "from trainwarden import ingest\n", "trainwarden.ingest"),
    ("app/new.py", "if True:\n    from trainwarden.cli.main import main\n", "trainwarden.cli.main"),
    ("model/__init__.py", "import importlib\nimportlib.import_module('trainwarden.parse.stream')\n",
     "trainwarden.parse.stream"),
])
def test_the_checker_finds_upward_imports(tmp_path, relative, source, target):
    imports = _synthetic_imports(tmp_path, relative, source)
    problems = upward_imports(imports)
    assert len(problems) == 1 and f"imports {target} " in problems[0], problems


@pytest.mark.parametrize(("relative", "source"), [
    ("parse/new.py", "from . import stream\nfrom ..model import X\nfrom trainwarden import __version__\n"),
    ("judge/rules/loss.py", "from .. import rules\nfrom ...model import X\nimport trainwarden.errors\n"),
    ("ingest/new.py", "from trainwarden.parse import stream\nfrom trainwarden.state import RunState\n"),
    ("outputs/new.py", "from trainwarden.judge.rules import loss\nfrom trainwarden.outputs.status import x\n"),
    ("app/new.py", "from trainwarden.ingest.reader import RunReader\nfrom trainwarden.outputs import status\n"),
    ("cli/new.py", "from trainwarden.cli.main import main\nfrom trainwarden.app.web import WebApp\n"),
    ("__main__.py", "from trainwarden.cli.main import main\n"),
])
def test_the_checker_allows_what_the_table_allows(tmp_path, relative, source):
    imports = _synthetic_imports(tmp_path, relative, source)
    assert imports and not upward_imports(imports)


# -- citations ---------------------------------------------------------------------------------------------------
CITATIONS = (b"DESIGN.md", b"../shared")
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "build", "dist", "out"})  # out: bench/out, generated logs


def repository_files(root: Path = REPO) -> list[Path]:
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")
                   and (not d.startswith(".") or d == ".ci")]  # .git, .venv, caches: not the repository's text
        files += [Path(folder) / n for n in names]
    return sorted(files)


def test_nothing_cites_a_file_outside_the_repository():
    this = Path(__file__).resolve()
    found = []
    for path in repository_files():
        if path.resolve() == this or path.stat().st_size > 8 << 20:
            continue
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            if any(c in line for c in CITATIONS):
                found.append(f"{_shown(path)}:{number}: {line.decode('utf-8', 'replace').strip()[:120]}")
    assert not found, "cite docs/ instead:\n" + "\n".join(found)
