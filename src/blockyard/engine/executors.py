"""Executors: strategies that run a BlockTask somewhere and hand back a Future.

The runner only calls `can_submit()`, `submit(task) -> Future[Outcome]` and
`shutdown()`, so a Dask executor (or any other) plugs in without touching it.
`can_submit()` is backpressure: while it says False the loop waits for a result
instead of submitting (and loading the inputs of) more ready blocks; it must say
True when nothing is in flight. An executor that sets
`inputs_by_reference` receives `InputRef`s (store references) instead of live
upstream outputs and resolves them where the block runs.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from blockyard.engine.execute import BlockTask, Outcome, execute_block
from blockyard.engine.plan import spec_value


class Executor(Protocol):
    name: str
    # True when outputs come back as live objects (same process).
    in_process: bool

    def can_submit(self) -> bool: ...

    def submit(self, task: BlockTask) -> "Future[Outcome]": ...

    def shutdown(self) -> None: ...


class _Bounded:
    """Backpressure for pool executors: at most `limit` tasks in flight. A deep enough
    queue (64, or 8 per worker) keeps the workers from idling between tasks: a small
    window made every submission wake a sleeping pool thread (measured on the
    1,000-block fan-out), while still bounding the inputs loaded ahead of time."""

    limit = 0
    _inflight = 0

    def can_submit(self) -> bool:
        return self._inflight < self.limit

    def _track(self, fut: "Future[Outcome]") -> "Future[Outcome]":
        self._inflight += 1  # only the run loop submits: no lock needed for +=
        fut.add_done_callback(self._untrack)
        return fut

    def _untrack(self, _fut: Any) -> None:
        with self._lock:
            self._inflight -= 1


@dataclass(frozen=True)
class InputRef:
    """One positional argument of a block, by reference to stored outputs.

    kind: value (passed as is) | whole (the upstream's outputs) | item (element
    `index` of a dynamic upstream's fan-out) | gather (a list, one per clone).
    A ref is the store's "<run_id>/<node_uuid>".
    """

    kind: str
    value: Any = None
    ref: str | None = None
    refs: tuple = ()
    index: int | None = None


def _load(store: Any, ref: str) -> list:
    run_id, node_uuid = ref.split("/", 1)
    return store.load_outputs(int(run_id), node_uuid)


def _as_argument(outputs: list) -> Any:
    return outputs[0] if len(outputs) == 1 else list(outputs)


def resolve_inputs(inputs: list, store: Any, items_cache: dict | None = None) -> list:
    """Turn InputRefs back into arguments (other values pass through).

    `items_cache` (ref -> parsed fan-out items) lets the many children of one
    dynamic block parse its output once per process instead of once per child.
    """
    from blockyard.engine.plan import parse_dynamic_output

    args = []
    for inp in inputs:
        if not isinstance(inp, InputRef):
            args.append(inp)
        elif inp.kind == "value":
            args.append(inp.value)
        elif inp.kind == "whole":
            args.append(_as_argument(_load(store, inp.ref)))
        elif inp.kind == "gather":
            args.append([_as_argument(_load(store, r)) for r in inp.refs])
        elif inp.kind == "item":
            items = items_cache.get(inp.ref) if items_cache is not None else None
            if items is None:
                items, _meta = parse_dynamic_output(_load(store, inp.ref))
                if items_cache is not None:
                    items_cache[inp.ref] = items
            args.append(items[inp.index])
        else:
            raise ValueError(f"unknown input reference kind {inp.kind!r}")
    return args


def run_inline(task: BlockTask) -> "Outcome | Exception":
    """Execute on the calling thread; an exception is handed back as a future would."""
    try:
        return execute_block(task)
    except Exception as exc:  # noqa: BLE001
        return exc


class InlineExecutor:
    """Runs each block on the calling thread: no concurrency, least overhead."""

    name = "inline"
    in_process = True

    def can_submit(self) -> bool:
        return True

    def submit(self, task: BlockTask) -> "Future[Outcome]":
        fut: Future = Future()
        try:
            fut.set_result(execute_block(task))
        except BaseException as exc:  # noqa: BLE001
            fut.set_exception(exc)
        return fut

    def shutdown(self) -> None:
        pass


class ThreadExecutor(_Bounded):
    """The default: independent blocks run concurrently on a thread pool."""

    name = "thread"
    in_process = True
    # A block that is the only one ready, with nothing else in flight, runs on the run
    # loop's own thread: nothing could run beside it, and a chain then pays no thread
    # hand-off per block (two wake-ups, ~40 us on this VM). The result is the same.
    inline_when_alone = True

    def __init__(self, max_workers: int | None = None) -> None:
        import threading

        workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self.limit, self._lock = max(64, 8 * workers), threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blockyard-block")

    def submit(self, task: BlockTask) -> "Future[Outcome]":
        return self._track(self._pool.submit(execute_block, task))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def _execute_in_child(task: BlockTask) -> Outcome:
    outcome = execute_block(task)
    outcome.outputs = None  # the parent reads them back from the store when needed
    return outcome


class ProcessExecutor(_Bounded):
    """For CPU-bound pure-Python blocks: each block runs in a worker process.

    Inputs travel pickled; outputs are persisted by the child and read back
    (memory-mapped) from the store by whoever needs them.
    """

    name = "process"
    in_process = False

    def __init__(self, max_workers: int | None = None) -> None:
        import multiprocessing
        import threading
        from concurrent.futures import ProcessPoolExecutor  # multiprocessing: only when used

        workers = max_workers or os.cpu_count() or 1
        self.limit, self._lock = max(64, 8 * workers), threading.Lock()
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
        )

    def submit(self, task: BlockTask) -> "Future[Outcome]":
        store = task.store
        url = task.store_url or (getattr(store, "url", None) if store is not None else None)
        child_task = replace(
            task, store=None, store_url=url, keep_outputs_in_memory=False, progress=None
        )
        return self._track(self._pool.submit(_execute_in_child, child_task))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class RoutingExecutor:
    """Sends each block to the executor its `executor_type` asks for (Mage's block
    key), the rest to the pipeline's default executor."""

    name = "routing"
    in_process = False

    def __init__(self, default: Executor, routes: dict[str, Executor]) -> None:
        self.default = default
        self.routes = routes
        self.inputs_by_reference = any(
            getattr(ex, "inputs_by_reference", False) for ex in [default, *routes.values()]
        )

    def can_submit(self) -> bool:
        # Per-route backpressure would need the next task's route: any route with room.
        return any(_can_submit(ex) for ex in [self.default, *self.routes.values()])

    def submit(self, task: BlockTask) -> "Future[Outcome]":
        ex = self.routes.get(task.block_uuid, self.default)
        if self.inputs_by_reference and not getattr(ex, "inputs_by_reference", False):
            try:
                task = replace(task, inputs=resolve_inputs(task.inputs, task.store))
            except BaseException as exc:  # noqa: BLE001 - reported as the block's failure
                fut: Future = Future()
                fut.set_exception(exc)
                return fut
        return ex.submit(task)

    def shutdown(self) -> None:
        seen = set()
        for ex in [self.default, *self.routes.values()]:
            if id(ex) not in seen:
                seen.add(id(ex))
                ex.shutdown()


def _can_submit(ex: Any) -> bool:
    fn = getattr(ex, "can_submit", None)  # an executor written before backpressure existed
    return True if fn is None else bool(fn())


KINDS = ("inline", "thread", "process", "dask")
# Mage's executor_type values that mean "run here" (k8s, ecs, ... have no meaning
# outside Mage's cloud launchers; such blocks run on the pipeline's executor).
_MAGE_LOCAL = {None, "", "local_python"}


def make_executor(kind: str | Executor | None, max_workers: int | None = None) -> Executor:
    if kind is None or kind == "thread":
        return ThreadExecutor(max_workers)
    if not isinstance(kind, str):
        return kind
    if kind == "inline":
        return InlineExecutor()
    if kind == "process":
        return ProcessExecutor(max_workers)
    if kind == "dask":
        from blockyard.engine.dask_executor import DaskExecutor

        return DaskExecutor()
    from blockyard.errors import BlockyardError

    raise BlockyardError(f"unknown executor {kind!r}", hint=f"choose one of {', '.join(KINDS)}")


def _declared_kind(value: Any) -> str | None:
    """A metadata.yaml executor_type as one of KINDS, or None for 'the default'."""
    if value in _MAGE_LOCAL or not isinstance(value, str):
        return None
    return value if value in KINDS else None


def executor_for(
    spec: Any, kind: str | Executor | None, max_workers: int | None = None
) -> Executor:
    """The executor for one run of `spec`.

    `kind` (the CLI's --executor, the API's executor=) picks the default; without
    it the pipeline's `executor_type` does, else threads. A block whose own
    `executor_type` names another kind (e.g. dask) runs there, as in Mage.
    """
    if kind is not None and not isinstance(kind, str):
        return kind
    default_kind = kind or _declared_kind(spec_value(spec, "executor_type")) or "thread"
    wanted: dict[str, str] = {}
    for b in getattr(spec, "blocks", None) or []:
        k = _declared_kind(spec_value(b, "executor_type"))
        if k and k != default_kind:
            wanted[b.uuid] = k
    default = make_executor(default_kind, max_workers)
    if not wanted:
        return default
    made: dict[str, Executor] = {}
    for k in set(wanted.values()):
        made[k] = make_executor(k, max_workers)
    return RoutingExecutor(default, {u: made[k] for u, k in wanted.items()})
