"""Running blocks as tasks on a Dask cluster (`--executor dask`, `executor_type: dask`).

The runner stays the one place that decides what is ready, checks the cache and
records history; this executor only moves each block run to a Dask worker. Data
moves by reference: a task receives store references (`InputRef`), loads its
inputs from the artifact store (a path or fsspec URL every worker reads), writes
its outputs there and returns the small `Outcome` (digest, summaries, status)
— never a DataFrame through the scheduler.

The cluster is `BLOCKYARD_DASK_ADDRESS` (e.g. tcp://dask-scheduler:8786) when set,
else a small `LocalCluster` of worker processes started once per process. A worker
that dies mid-task is Dask's business: the scheduler reruns its tasks elsewhere
(a block run is idempotent on its store path, so the rerun overwrites the same
outputs). `distributed` is imported only when this executor is used.
"""
from __future__ import annotations

import atexit
import copy
import itertools
import os
import pickle
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from blockyard.engine.execute import BlockTask, Outcome, execute_block
from blockyard.engine.executors import resolve_inputs
from blockyard.errors import BlockyardError

ADDRESS_ENV = "BLOCKYARD_DASK_ADDRESS"
WORKERS_ENV = "BLOCKYARD_DASK_WORKERS"  # size of the LocalCluster when no address is set

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _local_cluster_client() -> Any:
    from distributed import Client, LocalCluster

    n = int(os.environ.get(WORKERS_ENV) or min(2, os.cpu_count() or 1))
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,  # blocks are often GIL-bound: parallelism comes from processes
        processes=True,
        dashboard_address=None,
        silence_logs=40,  # logging.ERROR
    )
    client = Client(cluster, set_as_default=False)
    client._blockyard_cluster = cluster  # closed with the client at exit
    return client


def get_client(address: str | None = None) -> Any:
    """One Dask client per address and process, shared by every run in it."""
    address = address or os.environ.get(ADDRESS_ENV) or None
    key = address or "local"
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise BlockyardError(
            f"the dask executor needs Dask's distributed scheduler: {exc}",
            hint="pip install 'blockyard[dask]'",
        ) from exc
    with _clients_lock:
        client = _clients.get(key)
        if client is not None and client.status in ("running", "connecting"):
            return client
        if address:
            from distributed import Client

            try:
                client = Client(address, set_as_default=False, timeout=30)
            except OSError as exc:
                raise BlockyardError(
                    f"cannot reach the Dask scheduler at {address}: {exc}",
                    hint=f"start it (`dask scheduler`) or unset {ADDRESS_ENV} for a local cluster",
                ) from exc
        else:
            try:
                client = _local_cluster_client()
            except Exception as exc:  # noqa: BLE001 - e.g. spawned workers cannot import __main__
                raise BlockyardError(
                    f"cannot start a local Dask cluster: {type(exc).__name__}: {exc}",
                    hint=f"set {ADDRESS_ENV} to a running scheduler; a script that starts one "
                    "must guard its code with `if __name__ == '__main__':`",
                ) from exc
        _clients[key] = client
        return client


@atexit.register
def close_clients() -> None:
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        cluster = getattr(client, "_blockyard_cluster", None)
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


# ------------------------------------------------------------------ worker side
_stores: dict[str, Any] = {}
# Parsed fan-outs of recent dynamic blocks: 10,000 children of one block parse its
# output once per worker process, not 10,000 times.
_items: "OrderedDict[str, list]" = OrderedDict()
_ITEMS_KEEP = 16
_worker_lock = threading.Lock()


class _ItemsCache(dict):
    def get(self, key, default=None):  # type: ignore[override]
        with _worker_lock:
            if key in _items:
                _items.move_to_end(key)
                return _items[key]
        return default

    def __setitem__(self, key, value) -> None:
        with _worker_lock:
            _items[key] = value
            while len(_items) > _ITEMS_KEEP:
                _items.popitem(last=False)


def _store(url: str) -> Any:
    with _worker_lock:
        store = _stores.get(url)
        if store is None:
            from blockyard.store import ArtifactStore

            store = _stores[url] = ArtifactStore(url)
        return store


def _dumps(task: BlockTask) -> bytes:
    # The C pickler is ~4x faster per task; cloudpickle for what it cannot take
    # (lambdas or classes defined in a block, passed as variables).
    try:
        return pickle.dumps(task, protocol=5)
    except Exception:  # noqa: BLE001
        import cloudpickle

        return cloudpickle.dumps(task, protocol=5)


def run_payload(payload: bytes) -> Outcome:
    """What a Dask worker runs: one block run, inputs loaded from and outputs
    written to the artifact store. Returns the outcome without the outputs."""
    task: BlockTask = pickle.loads(payload)
    store = _store(task.store_url)
    from blockyard.engine.gdp import register_codec

    register_codec()  # stored global-data-product references must load here too
    try:
        inputs = resolve_inputs(task.inputs, store, _ItemsCache())
    except Exception as exc:  # noqa: BLE001 - becomes the block's failure, like any error
        outcome = Outcome(node_uuid=task.node_uuid, status="failed")
        outcome.error = f"block '{task.node_uuid}': cannot load its inputs from the store: {exc}"
        outcome.error_details = {"block": task.node_uuid, "message": outcome.error}
        return outcome
    outcome = execute_block(replace(task, inputs=inputs, store=store))
    outcome.outputs = None  # they are in the store; the runner reads them if it needs them
    return outcome


def run_payloads(payloads: list) -> list:
    """A packed chunk of small block runs as one Dask task (see `DaskExecutor._chunks`):
    each still runs on its own, with its own retries, timeout and outcome."""
    return [run_payload(p) for p in payloads]


# ------------------------------------------------------------------ client side
# Packing: Dask costs a few ms per task (scheduler transitions, messages), more than a
# tiny block itself. Once blocks have proved small (recent mean duration below
# PACK_BELOW_S), block runs that are ready together travel as chunks of one task each,
# sized to run ~CHUNK_TARGET_S; blocks that take seconds (model training) are never
# packed, so they still spread over every worker thread.
PACK_BELOW_S = 0.02
CHUNK_TARGET_S = 0.05
CHUNK_MAX = 64
LINGER_S = 0.02  # how long a saturated cluster lets the outbox grow into a chunk
class DaskExecutor:
    """Submits each block run as one Dask task and hands back a concurrent Future.

    Two threads keep Dask's client overhead off the runner's loop: a submitter
    sends whatever became ready since its last batch in one `client.map`, and a
    pump collects what finished through `as_completed(...).batches()` with one
    `gather` per batch (a `result()` per task would cost a round trip each)."""

    name = "dask"
    in_process = False
    inputs_by_reference = True

    def __init__(self, address: str | None = None, client: Any = None) -> None:
        self.client = client or get_client(address)
        # Dask key -> the (future, block) pairs it carries (one, or a packed chunk).
        self._pending: dict[str, list[tuple[Future, str]]] = {}
        self._inflight = 0  # block runs sent and not yet delivered
        self._mean_s: float | None = None  # moving mean of block durations on workers
        self._nthreads = 0
        self._nthreads_at = 0.0
        self._outbox: list[tuple[str, bytes, Future, str]] = []
        self._lock = threading.Lock()
        self._ac: Any = None  # distributed.as_completed, made with the first batch
        self._has_work = threading.Event()
        self._has_results = threading.Event()
        self._closed = False
        self._prefix = f"blockyard-{uuid.uuid4().hex[:8]}"
        self._seq = itertools.count()
        self._threads = [
            threading.Thread(target=self._submitter, name="blockyard-dask-submit", daemon=True),
            threading.Thread(target=self._pump, name="blockyard-dask-results", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def can_submit(self) -> bool:
        return True  # submissions queue for the batching submitter thread; the cluster schedules

    def submit(self, task: BlockTask) -> "Future[Outcome]":
        fut: Future = Future()
        store = task.store
        url = task.store_url or (getattr(store, "url", None) if store is not None else None)
        if not url:
            fut.set_exception(BlockyardError(
                "the Dask executor needs an artifact store every worker can read",
                block=task.node_uuid,
                hint="set BLOCKYARD_STORE_URL to a shared path or an fsspec URL",
            ))
            return fut
        remote = copy.copy(task)  # ~10x cheaper than dataclasses.replace per task
        remote.store, remote.store_url, remote.keep_outputs_in_memory, remote.progress = None, url, False, None
        try:
            payload = _dumps(remote)
        except Exception as exc:  # noqa: BLE001 - one clear error naming the block
            fut.set_exception(BlockyardError(
                f"block '{task.node_uuid}' cannot be sent to a Dask worker: its inputs or "
                f"variables cannot be pickled ({type(exc).__name__}: {exc})",
                file=task.file_path,
                block=task.node_uuid,
            ))
            return fut
        # Keys name the run and block (the dashboard shows them); the prefix and
        # counter make them unique without a uuid per task.
        key = f"{self._prefix}-{task.run_id}-{task.node_uuid}-{next(self._seq)}"
        with self._lock:
            self._outbox.append((key, payload, fut, task.node_uuid))
        self._has_work.set()
        return fut

    def _submitter(self) -> None:
        while True:
            self._has_work.wait()
            self._has_work.clear()
            if not self._closed and self._packing():
                self._linger()
            with self._lock:
                batch, self._outbox = self._outbox, []
            if batch:
                self._send(batch)
            if self._closed:
                return

    def _linger(self) -> None:
        """Workers have a backlog of small tasks: a short wait costs no latency and
        lets the outbox grow into chunks."""
        try:
            deadline = time.monotonic() + LINGER_S
            while (time.monotonic() < deadline and not self._closed
                   and len(self._outbox) < CHUNK_MAX * 2
                   and self._inflight >= 4 * self._worker_threads()):
                time.sleep(0.002)
        except Exception:  # noqa: BLE001 - waiting is an optimisation, never a failure
            pass

    def _packing(self) -> bool:
        return self._mean_s is not None and self._mean_s < PACK_BELOW_S

    def _worker_threads(self) -> int:
        """Worker threads in the cluster (asked at most every 5 s)."""
        now = time.monotonic()
        if now - self._nthreads_at > 5.0:
            try:
                self._nthreads = max(1, sum(self.client.nthreads().values()))
            except Exception:  # noqa: BLE001 - keep the last answer
                self._nthreads = max(1, self._nthreads)
            self._nthreads_at = now
        return self._nthreads

    def _chunks(self, batch: list) -> list[list]:
        """Split a batch into chunks: singletons unless blocks proved small, then
        chunks of ~CHUNK_TARGET_S, never fewer chunks than worker threads."""
        if len(batch) < 2 or not self._packing():
            return [[b] for b in batch]
        size = int(CHUNK_TARGET_S / max(self._mean_s or 0.0, 1e-4))
        size = max(1, min(CHUNK_MAX, size, -(-len(batch) // self._worker_threads())))
        return [batch[i:i + size] for i in range(0, len(batch), size)]

    def _send(self, batch: list[tuple[str, bytes, Future, str]]) -> None:
        from distributed import as_completed

        chunks = self._chunks(batch)
        try:
            singles = [c[0] for c in chunks if len(c) == 1]
            packed = [c for c in chunks if len(c) > 1]
            dfuts = []
            if singles:
                dfuts += self.client.map(
                    run_payload, [b[1] for b in singles], key=[b[0] for b in singles], pure=False
                )
            if packed:
                dfuts += self.client.map(
                    run_payloads, [[b[1] for b in c] for c in packed],
                    key=[f"{c[0][0]}+{len(c) - 1}" for c in packed], pure=False,
                )
        except Exception as exc:  # noqa: BLE001 - e.g. the scheduler went away
            for _key, _payload, fut, node_uuid in batch:
                fut.set_exception(BlockyardError(
                    f"block '{node_uuid}' could not be submitted to Dask: {exc}", block=node_uuid
                ))
            return
        with self._lock:
            for c in singles:
                self._pending[c[0]] = [(c[2], c[3])]
            for c in packed:
                self._pending[f"{c[0][0]}+{len(c) - 1}"] = [(b[2], b[3]) for b in c]
            self._inflight += len(batch)
            if self._ac is None:
                self._ac = as_completed(
                    dfuts, loop=self.client.loop
                )
            else:
                self._ac.update(dfuts)
        self._has_results.set()

    def _pump(self) -> None:
        while not self._closed:
            self._has_results.wait()
            self._has_results.clear()
            if self._ac is None:
                continue
            for batch in self._ac.batches():  # ends when nothing is pending
                self._deliver(batch)

    def _deliver(self, batch: list) -> None:
        """One gather for every finished task of the batch (one round trip, not one each)."""
        done = [f for f in batch if f.status == "finished"]
        results: dict[str, Any] = {}
        if done:
            try:
                results = dict(zip([f.key for f in done], self.client.gather(done)))
            except Exception:  # noqa: BLE001 - fall back to one by one below
                results = {}
        for dfut in batch:
            with self._lock:
                entries = self._pending.pop(dfut.key, None)
                self._inflight -= len(entries or ())
            if entries is None:
                dfut.release()
                continue
            try:
                result = results[dfut.key] if dfut.key in results else dfut.result()
            except BaseException as exc:  # noqa: BLE001 - KilledWorker, cancelled, lost scheduler
                for fut, node_uuid in entries:
                    fut.set_exception(BlockyardError(
                        f"block '{node_uuid}' failed on the Dask cluster: {type(exc).__name__}: {exc}",
                        block=node_uuid,
                    ))
            else:
                outcomes = result if isinstance(result, list) else [result]
                for (fut, _node_uuid), outcome in zip(entries, outcomes):
                    self._observe(outcome)
                    fut.set_result(outcome)
            finally:
                dfut.release()

    def _observe(self, outcome: Any) -> None:
        duration = getattr(outcome, "duration", None)
        if duration is not None:
            m = self._mean_s
            self._mean_s = duration if m is None else 0.8 * m + 0.2 * duration

    def shutdown(self) -> None:
        # The client is shared by later runs in this process; only our tasks go.
        self._closed = True
        self._has_work.set()
        self._threads[0].join(timeout=10)
        with self._lock:
            left = [f for f in (self._ac.futures if self._ac is not None else ()) if f.key in self._pending]
        if left:
            self.client.cancel(left)
        self._has_results.set()
        self._threads[1].join(timeout=10)
