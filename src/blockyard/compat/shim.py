"""Serve `mage_ai.*` imports from Blockyard when real Mage is not installed.

Block code written for Mage does `from mage_ai.data_preparation.decorators import
data_loader`, `from mage_ai.io.file import FileIO`, and so on. `install()` puts a
finder on `sys.meta_path` that answers those imports:

* the parent packages (`mage_ai`, `mage_ai.io`, ...) are empty package modules;
* each supported module (see `MODULES`) is a thin module that forwards attribute
  lookups to a Blockyard module, so `from mage_ai.data_preparation.decorators
  import data_loader` gives the very object `blockyard.engine.decorators.data_loader`;
* any other `mage_ai.*` name raises ModuleNotFoundError saying what is supported.

When a real `mage_ai` is importable, `install()` does nothing. This module only
imports the standard library; the Blockyard modules behind the aliases are
imported when the matching `mage_ai` module is.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

ROOT = "mage_ai"

# mage_ai module -> Blockyard module serving it.
MODULES: dict[str, str] = {
    "mage_ai.data_preparation.decorators": "blockyard.engine.decorators",
    "mage_ai.data_preparation.shared.secrets": "blockyard.compat.secrets",
    "mage_ai.data_preparation.variable_manager": "blockyard.compat.variables",
    "mage_ai.io.config": "blockyard.compat.ioconfig",
    "mage_ai.io.file": "blockyard.compat.fileio",
    "mage_ai.orchestration.triggers.api": "blockyard.compat.triggers",
    "mage_ai.shared.parsers": "blockyard.compat.parsers",
}

# Plain package modules that only hold the supported modules.
PACKAGES: frozenset[str] = frozenset(
    {
        "mage_ai",
        "mage_ai.data_preparation",
        "mage_ai.data_preparation.shared",
        "mage_ai.io",
        "mage_ai.orchestration",
        "mage_ai.orchestration.triggers",
        "mage_ai.shared",
    }
)

_MARKER = "__blockyard_compat__"
_lock = threading.Lock()
_real_mage: bool | None = None  # decided once per process


def unsupported_message(fullname: str) -> str:
    supported = ", ".join(sorted(MODULES))
    return (
        f"Blockyard's Mage compatibility layer has no module '{fullname}'; "
        f"install mage-ai or replace the import (supported: {supported})"
    )


class _PackageLoader:
    # Loaders and finders are duck-typed; importlib.abc would pull importlib.resources.
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # default module creation

    def exec_module(self, module: types.ModuleType) -> None:
        module.__doc__ = f"Blockyard compatibility package standing in for {module.__name__}."
        setattr(module, _MARKER, True)


class _AliasLoader:
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        target = importlib.import_module(self.target)
        name = module.__name__

        def __getattr__(attr: str) -> Any:
            if not (attr.startswith("__") and attr.endswith("__")):
                try:
                    return getattr(target, attr)
                except AttributeError:
                    pass
            raise AttributeError(
                f"module '{name}' (served by {target.__name__}) has no attribute '{attr}'"
            )

        def __dir__() -> list[str]:
            return sorted(set(module.__dict__) | set(dir(target)))

        module.__doc__ = f"Blockyard compatibility module: {name} served by {target.__name__}."
        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        module.__dir__ = __dir__  # type: ignore[method-assign]
        module.__all__ = _public_names(target)  # type: ignore[attr-defined]
        setattr(module, _MARKER, True)
        module.__blockyard_target__ = target  # type: ignore[attr-defined]


def _public_names(target: types.ModuleType) -> list[str]:
    names = getattr(target, "__all__", None)
    if names is not None:
        return list(names)
    return [
        n
        for n, obj in vars(target).items()
        if not n.startswith("_")
        and not isinstance(obj, types.ModuleType)
        and getattr(obj, "__module__", target.__name__) == target.__name__
    ]


class MageCompatFinder:
    """Answers imports of `mage_ai` and its submodules; ignores everything else."""

    _blockyard_mage_shim = True

    def __init__(self) -> None:
        self._package_loader = _PackageLoader()

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != ROOT and not fullname.startswith(ROOT + "."):
            return None
        if fullname in PACKAGES:
            return importlib.util.spec_from_loader(
                fullname, self._package_loader, is_package=True
            )
        alias = MODULES.get(fullname)
        if alias is not None:
            return importlib.util.spec_from_loader(fullname, _AliasLoader(alias))
        raise ModuleNotFoundError(unsupported_message(fullname), name=fullname)


def _our_finder() -> Any:
    for finder in sys.meta_path:
        if getattr(finder, "_blockyard_mage_shim", False):
            return finder
    return None


def _real_mage_installed() -> bool:
    module = sys.modules.get(ROOT)
    if module is not None:
        return not getattr(module, _MARKER, False)
    try:
        spec = importlib.util.find_spec(ROOT)
    except (ImportError, ValueError):
        return False
    # A bare `mage_ai/` directory (namespace package, no origin) is not an installation.
    return spec is not None and bool(spec.origin) and spec.origin != "namespace"


def install() -> bool:
    """Make `mage_ai.*` imports resolve to Blockyard; idempotent and cheap to repeat.

    Returns True when the shim serves `mage_ai`, False when a real Mage is installed.
    """
    global _real_mage
    if _real_mage:
        return False
    if _real_mage is False and _our_finder() is not None:
        return True
    with _lock:
        if _real_mage is None:
            finder = _our_finder()
            _real_mage = False if finder is not None else _real_mage_installed()
        if _real_mage:
            return False
        if _our_finder() is None:
            sys.meta_path.insert(0, MageCompatFinder())
        return True


def uninstall() -> None:
    """Remove the finder and forget the `mage_ai` modules it served."""
    global _real_mage
    with _lock:
        sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "_blockyard_mage_shim", False)]
        for name in [n for n in sys.modules if n == ROOT or n.startswith(ROOT + ".")]:
            if getattr(sys.modules[name], _MARKER, False):
                del sys.modules[name]
        _real_mage = None


def is_installed() -> bool:
    return _our_finder() is not None
