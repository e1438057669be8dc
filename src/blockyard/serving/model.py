"""A registry alias, loaded once and kept warm; hot swap when the alias moves.

A `LoadedModel` is immutable once built. The `ModelHolder` polls the alias every
`poll_seconds`; when it points at another version, the new one is loaded beside the
old one (requests keep using the old) and then `holder.current` is replaced in one
assignment. A request reads `holder.current` once and uses that object to the end,
so no request ever sees half of a swap.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from blockyard.serving.features import FeatureSpec, resolve_transform

_log = logging.getLogger("blockyard.serving")

DEFAULT_MODEL = "nyc-taxi-duration"
DEFAULT_ALIAS = "champion"
DEFAULT_POLL_SECONDS = 2.0


class ModelNotFound(LookupError):
    """The registry has no version under the alias (yet)."""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    alias: str
    version: str
    run_id: str | None
    model: Any
    dv: Any
    spec: FeatureSpec
    flavor: str
    model_class: str
    transform: str
    loaded_at: float = field(default_factory=time.time)

    def predict(self, records: list[dict], field: str = "inputs") -> list[float]:
        """Validate + transform `records` (raises RequestError) and predict."""
        return self.predict_rows(self.spec.prepare(records, field))

    def predict_rows(self, rows: list[dict]) -> list[float]:
        X = self.dv.transform(rows)
        if self.flavor == "xgboost":
            booster = self.model if hasattr(self.model, "inplace_predict") else self.model.get_booster()
            out = booster.inplace_predict(X)
        else:
            out = self.model.predict(X)
        return [float(v) for v in out]

    def describe(self) -> dict:
        return {
            "model": self.name,
            "alias": self.alias,
            "version": self.version,
            "run_id": self.run_id,
            "flavor": self.flavor,
            "model_class": self.model_class,
            "features": self.spec.features,
            "transform": self.transform or None,
            "loaded_at": self.loaded_at,
        }


_clients: dict[str, Any] = {}


def _client(workspace_root: Path):
    """A registry client for the workspace's store, made once (the poll runs every few
    seconds and must not touch MLflow's process-wide settings)."""
    from blockyard.ml.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(workspace_root)
    client = _clients.get(uri)
    if client is None:
        from mlflow.tracking import MlflowClient

        from blockyard.ml.tracking import setup_mlflow

        setup_mlflow(workspace_root)  # once: creates the store (and its folder) when missing
        client = _clients[uri] = MlflowClient(tracking_uri=uri)
    return client


def resolve_alias(workspace_root: Path, name: str, alias: str) -> Any:
    """The registry's ModelVersion under `name@alias` (ModelNotFound if none)."""
    from mlflow.exceptions import MlflowException

    client = _client(Path(workspace_root))
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise ModelNotFound(f"no model version {name}@{alias} in the registry of {workspace_root}: "
                            f"{str(exc).splitlines()[0]}") from None


def load_version(workspace_root: Path, name: str, alias: str, version: Any = None,
                 transform: str | None = None) -> LoadedModel:
    """Load model + DictVectorizer of `version` (default: the alias's current one).

    The version is pinned (models:/name/<version>), so an alias that moves while
    loading cannot mix two versions."""
    import mlflow

    from blockyard.ml.tracking import load_dv

    from blockyard.ml.tracking import setup_mlflow

    root = Path(workspace_root).resolve()
    setup_mlflow(root)  # models:/ URIs resolve against the process-wide tracking URI
    mv = resolve_alias(root, name, alias) if version is None else _client(root).get_model_version(name, str(version))
    uri = f"models:/{name}/{mv.version}"
    flavors = mlflow.models.get_model_info(uri).flavors
    if "xgboost" in flavors:
        import mlflow.xgboost

        model, flavor = mlflow.xgboost.load_model(uri), "xgboost"
        booster = model if hasattr(model, "inplace_predict") else model.get_booster()
        booster.set_param({"nthread": 1})  # one row at a time: threads only add overhead
    elif "sklearn" in flavors:
        import mlflow.sklearn

        model, flavor = mlflow.sklearn.load_model(uri), "sklearn"
    else:
        raise ValueError(f"{uri}: flavours {sorted(flavors)}; serving needs an xgboost or sklearn model")
    if not mv.run_id:
        raise ValueError(f"{uri} has no MLflow run, so no DictVectorizer to load")
    dv = load_dv(mv.run_id, workspace=root)
    func, dotted = resolve_transform(root, transform)
    from blockyard.ml.tracking import model_class_name

    return LoadedModel(name=name, alias=alias, version=str(mv.version), run_id=mv.run_id, model=model, dv=dv,
                       spec=FeatureSpec(dv, func), flavor=flavor, model_class=model_class_name(model),
                       transform=dotted)


class ModelHolder:
    """The model answering now, and the poller that swaps in a new version."""

    def __init__(self, workspace_root: Path, name: str = DEFAULT_MODEL, alias: str = DEFAULT_ALIAS, *,
                 transform: str | None = None, poll_seconds: float = DEFAULT_POLL_SECONDS,
                 on_swap: Optional[Callable[[dict], None]] = None) -> None:
        self.root = Path(workspace_root).resolve()
        self.name = name
        self.alias = alias
        self.transform = transform
        self.poll_seconds = poll_seconds
        self.on_swap = on_swap
        self.current: LoadedModel | None = None
        self.swaps: list[dict] = []  # the last ones, newest last
        self.last_error: str | None = None
        self._lock = threading.Lock()  # one load at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self) -> LoadedModel:
        """Load the alias's version now (the first load; raises ModelNotFound)."""
        if self.current is not None:  # no lock: a poll holding it may be asking the registry
            return self.current
        with self._lock:
            if self.current is None:
                self.current = load_version(self.root, self.name, self.alias, transform=self.transform)
                _log.info("serving %s v%s (%s)", self.name, self.current.version, self.current.model_class)
        return self.current

    def check(self) -> bool:
        """Swap when the alias points at another version; True when it swapped."""
        with self._lock:
            mv = resolve_alias(self.root, self.name, self.alias)
            old = self.current
            if old is not None and str(mv.version) == old.version:
                return False
            started = time.perf_counter()
            new = load_version(self.root, self.name, self.alias, version=mv.version, transform=self.transform)
            self.current = new  # the swap: one reference assignment
            event = {"at": time.time(), "from_version": old.version if old else None, "to_version": new.version,
                     "load_seconds": round(time.perf_counter() - started, 3)}
            self.swaps = (self.swaps + [event])[-20:]
        _log.info("%s@%s moved: now serving v%s (was v%s)", self.name, self.alias, new.version, event["from_version"])
        if self.on_swap:
            self.on_swap(event)
        return True

    def start(self) -> None:
        if self._thread is None and self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll, name=f"serve-poll-{self.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - keep serving the old version
                message = f"{type(exc).__name__}: {exc}"
                if message != self.last_error:
                    _log.warning("registry poll for %s@%s failed (still serving v%s): %s", self.name, self.alias,
                                 self.current.version if self.current else "-", message)
                self.last_error = message


_holders: dict[tuple, ModelHolder] = {}
_holders_lock = threading.Lock()
_warm: dict[tuple, ModelHolder] = {}  # by the caller's own (unresolved) root


def holder_for(workspace_root: Path, name: str = DEFAULT_MODEL, alias: str = DEFAULT_ALIAS, *,
               transform: str | None = None, poll_seconds: float = DEFAULT_POLL_SECONDS,
               warm_only: bool = False) -> ModelHolder | None:
    """The process's holder for (workspace, model, alias), loaded and polling.
    `warm_only`: None instead of loading (a caller on an event loop must not block)."""
    fast = _warm.get((str(workspace_root), name, alias, transform))
    if fast is not None:
        return fast
    if warm_only:
        return None
    key = (str(Path(workspace_root).resolve()), name, alias, transform)
    with _holders_lock:
        holder = _holders.get(key)
        if holder is None:
            holder = ModelHolder(workspace_root, name, alias, transform=transform, poll_seconds=poll_seconds)
            _holders[key] = holder
    holder.load()
    holder.start()
    _warm[(str(workspace_root), name, alias, transform)] = holder  # loaded: later calls skip all of the above
    return holder


def stop_all_holders() -> None:
    with _holders_lock:
        holders = list(_holders.values())
        _holders.clear()
    _warm.clear()
    for holder in holders:
        holder.stop()
