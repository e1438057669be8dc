"""Global data products: a block whose output is another pipeline's outputs.

The producer pipeline runs only when its last completed run is older than
`outdated_after`; the block then hands on a mapping from the producer's block
uuids to their outputs (a list for tuple outputs), loaded lazily from the store.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from blockyard.engine.execute import Outcome
from blockyard.errors import BlockyardError

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


class GlobalProductData(Mapping):
    """`training_set['build']` -> the outputs of block `build` of the producer's run."""

    def __init__(self, store_url: str, refs: dict[str, str], producer: str, run_id: int) -> None:
        self.store_url = store_url
        self.refs = dict(refs)
        self.producer = producer
        self.run_id = run_id
        self._loaded: dict[str, Any] = {}
        self._store = None

    def __getitem__(self, key: str) -> Any:
        if key not in self.refs:
            raise KeyError(
                f"{key!r}: the producer pipeline '{self.producer}' has no output for that block "
                f"(blocks with outputs: {', '.join(self.refs)})"
            )
        if key not in self._loaded:
            if self._store is None:
                from blockyard.store import ArtifactStore

                self._store = ArtifactStore(self.store_url)
            run_id, node = self.refs[key].split("/", 1)
            outputs = self._store.load_outputs(int(run_id), node)
            self._loaded[key] = outputs[0] if len(outputs) == 1 else list(outputs)
        return self._loaded[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.refs)

    def __len__(self) -> int:
        return len(self.refs)

    def __repr__(self) -> str:
        return f"GlobalProductData({self.producer!r}, run {self.run_id}, blocks={list(self.refs)})"

    def to_json(self) -> dict:
        return {
            "store_url": self.store_url,
            "refs": self.refs,
            "producer": self.producer,
            "run_id": self.run_id,
        }


class GlobalProductCodec:
    """Stores the mapping as a reference, never copying the producer's data."""

    name = "global_product"
    extension = ".gdp.json"

    def can_encode(self, obj: Any) -> bool:
        return isinstance(obj, GlobalProductData)

    def save(self, obj: GlobalProductData, fs: Any, path: str) -> None:
        import json

        with fs.open(path, "w") as fh:
            json.dump(obj.to_json(), fh)

    def load(self, fs: Any, path: str) -> GlobalProductData:
        import json

        with fs.open(path, "r") as fh:
            d = json.load(fh)
        return GlobalProductData(d["store_url"], d["refs"], d["producer"], d["run_id"])


_registered = False


def register_codec() -> None:
    global _registered
    if not _registered:
        from blockyard.store import register_codec as reg

        reg(GlobalProductCodec(), first=True)
        _registered = True


def _seconds(outdated_after: Any) -> float:
    if outdated_after is None:
        return 0.0
    if isinstance(outdated_after, (int, float)):
        return float(outdated_after)
    units = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
    return float(sum(float(outdated_after.get(k) or 0) * v for k, v in units.items()))


def _producer_spec(runner: Any, uuid: str, entry: dict) -> Any:
    ws = runner.session.workspace
    pipeline = entry.get("object_uuid")
    if not pipeline:
        raise BlockyardError(
            f"global data product '{uuid}' names no object_uuid (the producer pipeline)",
            file=runner.spec.project.path / "global_data_products.yaml",
        )
    candidates = []
    if entry.get("project"):
        candidates.append(entry["project"])
    candidates.append(runner.spec.project.name)
    for name in candidates:
        try:
            project = ws.project(name)
        except Exception:
            continue
        if pipeline in project.pipeline_uuids():
            return project.pipeline(pipeline)
    return ws.find_pipeline(pipeline)


def resolve_global_data_product(runner: Any, node: Any, run: Callable[[Any], Any]) -> Outcome:
    """Complete a global-data-product node: reuse the producer pipeline's latest
    completed run while fresh, else `run(producer_spec)` (the runner hands in how a
    pipeline runs; it returns an object with `.status` and `.runner.run_id/.error`)."""
    register_codec()
    started = datetime.now(timezone.utc)
    cfg = (node.block.spec.configuration or {}).get("global_data_product") or {}
    uuid = cfg.get("uuid") or node.block.uuid
    products = runner.spec.project.global_data_products() or {}
    entry = products.get(uuid)
    if entry is None:
        raise BlockyardError(
            f"global data product '{uuid}' is not defined",
            file=runner.spec.project.path / "global_data_products.yaml",
            block=node.uuid,
            hint="add it to global_data_products.yaml",
        )
    producer = _producer_spec(runner, uuid, entry)
    db = runner.session.db
    max_age = timedelta(seconds=_seconds(entry.get("outdated_after")))
    key = (producer.project.name, producer.uuid)
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        latest = db.latest_pipeline_run(producer.project.name, producer.uuid, status="completed")
        fresh = (
            latest is not None
            and latest.get("completed_at") is not None
            and datetime.now(timezone.utc) - _aware(latest["completed_at"]) < max_age
        )
        if not fresh:
            state = run(producer)
            if state.status != "completed":
                raise BlockyardError(
                    f"global data product '{uuid}': producer pipeline "
                    f"'{producer.project.name}/{producer.uuid}' failed: {state.runner.error}",
                    block=node.uuid,
                )
            latest = db.get_pipeline_run(state.runner.run_id)
    refs = {
        row["block_uuid"]: row["output_ref"]
        for row in db.get_block_runs(latest["id"])
        if row.get("output_ref") and row.get("status") == "completed"
    }
    store = runner.session.store
    data = GlobalProductData(str(store.url), refs, producer.uuid, latest["id"])
    manifest = store.save_outputs(runner.run_id, node.uuid, [data])
    digests = sorted(
        f"{r['block_uuid']}={r.get('digest')}" for r in db.get_block_runs(latest["id"])
    )
    outcome = Outcome(node_uuid=node.uuid, status="completed", outputs=[data], attempts=1)
    outcome.digest = hashlib.blake2b("|".join(digests).encode(), digest_size=16).hexdigest()
    outcome.output_ref = f"{runner.run_id}/{node.uuid}"
    outcome.started_at = started
    outcome.completed_at = datetime.now(timezone.utc)
    del manifest
    return outcome


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
