"""Executors: strategies that run a BlockTask somewhere and hand back a Future.

The runner only calls `submit(task) -> Future[Outcome]` and `shutdown()`, so a
Dask executor (or any other) plugs in without touching it.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from typing import Protocol

from blockyard.engine.execute import BlockTask, Outcome, execute_block


class Executor(Protocol):
    name: str
    # True when outputs come back as live objects (same process).
    in_process: bool

    def submit(self, task: BlockTask) -> "Future[Outcome]": ...

    def shutdown(self) -> None: ...


class InlineExecutor:
    """Runs each block on the calling thread: no concurrency, least overhead."""

    name = "inline"
    in_process = True

    def submit(self, task: BlockTask) -> "Future[Outcome]":
        fut: Future = Future()
        try:
            fut.set_result(execute_block(task))
        except BaseException as exc:  # noqa: BLE001
            fut.set_exception(exc)
        return fut

    def shutdown(self) -> None:
        pass


class ThreadExecutor:
    """The default: independent blocks run concurrently on a thread pool."""

    name = "thread"
    in_process = True

    def __init__(self, max_workers: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=max_workers or min(32, (os.cpu_count() or 1) + 4),
            thread_name_prefix="blockyard-block",
        )

    def submit(self, task: BlockTask) -> "Future[Outcome]":
        return self._pool.submit(execute_block, task)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def _execute_in_child(task: BlockTask) -> Outcome:
    outcome = execute_block(task)
    outcome.outputs = None  # the parent reads them back from the store when needed
    return outcome


class ProcessExecutor:
    """For CPU-bound pure-Python blocks: each block runs in a worker process.

    Inputs travel pickled; outputs are persisted by the child and read back
    (memory-mapped) from the store by whoever needs them.
    """

    name = "process"
    in_process = False

    def __init__(self, max_workers: int | None = None) -> None:
        import multiprocessing

        self._pool = ProcessPoolExecutor(
            max_workers=max_workers or os.cpu_count() or 1,
            mp_context=multiprocessing.get_context("spawn"),
        )

    def submit(self, task: BlockTask) -> "Future[Outcome]":
        store = task.store
        url = task.store_url or (getattr(store, "url", None) if store is not None else None)
        child_task = replace(
            task, store=None, store_url=url, keep_outputs_in_memory=False, progress=None
        )
        return self._pool.submit(_execute_in_child, child_task)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def make_executor(kind: str | Executor | None, max_workers: int | None = None) -> Executor:
    if kind is None or kind == "thread":
        return ThreadExecutor(max_workers)
    if not isinstance(kind, str):
        return kind
    if kind == "inline":
        return InlineExecutor()
    if kind == "process":
        return ProcessExecutor(max_workers)
    raise ValueError(f"unknown executor {kind!r}: choose inline, thread or process")
