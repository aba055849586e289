"""prometheus_client's core (metric families, the registry, the float formatting) without its HTTP half.

`import prometheus_client.anything` first runs the package's `__init__`, which imports every submodule, among them
`exposition` (http.server, urllib.request, wsgiref and through them OpenSSL) and the default registry's process
and platform collectors: about 13 MiB resident, more than the agent's own code, for modules the agent never uses
(it serves its own HTTP, app/web.py, and encodes with outputs/exposition.py). `load_core_only()` puts the package
in `sys.modules` as itself but with its `__init__` not yet run: submodules import as usual, and the first name
asked of the package that is not a submodule (`from prometheus_client import generate_latest`, `.REGISTRY`) runs
the real `__init__` then, into the same module object, so every feature of the library stays as it was, only
later. Called by `trainwarden.outputs` on import; it does nothing when the package is already imported or is not
a plain package on disk.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading

PACKAGE = "prometheus_client"


def load_core_only() -> bool:
    """Register the package with its `__init__` deferred. False when it is imported already (or cannot be)."""
    if PACKAGE in sys.modules:
        return False
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return False
    package = importlib.util.module_from_spec(spec)
    lock = threading.RLock()
    initialised = False

    def __getattr__(name: str):
        nonlocal initialised
        if not name.startswith("__"):
            try:  # a submodule (the package's own `from . import values`): imported as usual
                return importlib.import_module(f"{PACKAGE}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{PACKAGE}.{name}":
                    raise
        with lock:
            if not initialised:
                initialised = True
                spec.loader.exec_module(package)  # the real __init__, now
        try:
            return package.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}") from None

    package.__getattr__ = __getattr__
    sys.modules[PACKAGE] = package
    return True
