"""Serve `mage_ai.*` imports from Blockyard when real Mage is not installed.

Block code written for Mage does `from mage_ai.data_preparation.decorators import
data_loader`, `from mage_ai.io.file import FileIO`, and so on. `install()` puts a
finder on `sys.meta_path` that answers those imports:

* the parent packages (`mage_ai`, `mage_ai.io`, ...) are empty package modules;
* each supported module (see `MODULES`) is a thin module that forwards attribute
  lookups to a Blockyard module, so `from mage_ai.data_preparation.decorators
  import data_loader` gives the very object `blockyard.engine.decorators.data_loader`;
* any other `mage_ai.*` name raises `UnsupportedMageImport` (a ModuleNotFoundError)
  naming the import, the file and line that made it, and what to do instead
  (docs/mage-compat.md lists what is supported).

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
    "mage_ai.data_preparation.repo_manager": "blockyard.compat.repo",
    "mage_ai.data_preparation.shared.secrets": "blockyard.compat.secrets",
    "mage_ai.data_preparation.variable_manager": "blockyard.compat.variables",
    "mage_ai.io.config": "blockyard.compat.ioconfig",
    "mage_ai.io.file": "blockyard.compat.fileio",
    "mage_ai.io.postgres": "blockyard.compat.postgres",
    "mage_ai.orchestration.triggers.api": "blockyard.compat.triggers",
    "mage_ai.settings.repo": "blockyard.compat.repo",
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
        "mage_ai.settings",
        "mage_ai.shared",
    }
)

_MARKER = "__blockyard_compat__"
_lock = threading.Lock()
_real_mage: bool | None = None  # decided once per process


# Why some often-imported modules are missing, and what to use instead.
_REASONS: tuple[tuple[str, str], ...] = (
    ("mage_ai.io.", "Blockyard has no connector for it (only mage_ai.io.postgres, mage_ai.io.file "
     "and mage_ai.io.config); call the service's own Python client in the block"),
    ("mage_ai.data_preparation.models", "Mage's internal models (Pipeline, Block) have no "
     "counterpart; use blockyard.project (Workspace, PipelineSpec)"),
    ("mage_ai.orchestration.db", "Blockyard's run history lives in its own database; read runs "
     "through GET /api/pipeline_runs or blockyard.db"),
    ("mage_ai.server", "Mage's server internals have no counterpart; use Blockyard's REST API"),
    ("mage_ai.api", "Mage's server internals have no counterpart; use Blockyard's REST API"),
)
DOC = "docs/mage-compat.md"


class UnsupportedMageImport(ModuleNotFoundError):
    """An import of a `mage_ai` module Blockyard does not serve.

    `file`/`line` say where the import statement is; the loader turns this into one
    BlockLoadError at that place (see `blockyard_where`)."""

    def __init__(self, fullname: str, file: str | None, line: int | None, shown: str | None) -> None:
        self.module = fullname
        self.file, self.line = file, line
        self.reason = _reason(fullname)
        where = f" ({shown}, line {line})" if shown and line else (f" ({shown})" if shown else "")
        super().__init__(f"{fullname} is not supported by Blockyard{where}: {self.reason}", name=fullname)
        # (file, line, message without the place) for the block loader.
        self.blockyard_where = (file, line, f"{fullname} is not supported by Blockyard: {self.reason}")


def _reason(fullname: str) -> str:
    for prefix, why in _REASONS:
        if fullname.startswith(prefix) or fullname == prefix.rstrip("."):
            return f"{why} (supported modules: see {DOC}; or install mage-ai)"
    return f"Blockyard serves only the mage_ai modules listed in {DOC}; replace the import or install mage-ai"


def unsupported_message(fullname: str) -> str:
    return str(UnsupportedMageImport(fullname, None, None, None))


_SKIP_FILES = (__file__,)


def _importer() -> tuple[str | None, int | None]:
    """(file, line) of the code whose import statement reached the finder: the first
    frame outside importlib's machinery and this module."""
    import os

    importlib_dir = os.path.dirname(importlib.__file__)
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith("<frozen") or name in _SKIP_FILES or name.startswith(importlib_dir)):
            return name, frame.f_lineno
        frame = frame.f_back
    return None, None


def _shown(file: str | None) -> str | None:
    """`file` relative to the running block's workspace (or the cwd) when inside it."""
    if not file or file.startswith("<"):
        return file
    import os

    bases = []
    runtime = sys.modules.get("blockyard.runtime")
    ctx = runtime.get() if runtime is not None else None
    if ctx is not None:
        bases.append(ctx.workspace_root)
    bases.append(os.getcwd())
    for base in bases:
        try:
            rel = os.path.relpath(file, base)
        except ValueError:  # another drive
            continue
        if not rel.startswith(".."):
            return rel
    return file


class _PackageLoader:
    # Loaders and finders are duck-typed; importlib.abc would pull importlib.resources.
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # default module creation

    def exec_module(self, module: types.ModuleType) -> None:
        module.__doc__ = f"Blockyard compatibility package standing in for {module.__name__}."
        setattr(module, _MARKER, True)
        name = module.__name__

        def __getattr__(attr: str) -> Any:
            # `from mage_ai.io import snowflake`: Python swallows the submodule's
            # ModuleNotFoundError and asks the package; answer with the same message.
            if attr.startswith("_"):  # dunder and private probes by tools stay AttributeErrors
                raise AttributeError(f"module '{name}' has no attribute '{attr}'")
            child = f"{name}.{attr}"
            if child in MODULES or child in PACKAGES:
                return importlib.import_module(child)
            file, line = _importer()
            raise UnsupportedMageImport(child, file, line, _shown(file))

        module.__getattr__ = __getattr__  # type: ignore[method-assign]


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
        file, line = _importer()
        raise UnsupportedMageImport(fullname, file, line, _shown(file))


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
