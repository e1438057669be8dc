"""Executing one block run: conditions, the function with retries and timeout,
its @test functions, persistence of its outputs, and callbacks.

This is what an executor runs on a worker; it records nothing in the database
(the runner does), so it runs the same on a thread, a process or a Dask worker.
"""
from __future__ import annotations

import contextvars
import threading
import time
import traceback as tb_module
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from blockyard.engine.loader import (
    LoadedBlock,
    def_line,
    ensure_import_paths,
    load_block,
    positional_capacity,
    run_prelude,
    user_line,
)
from blockyard.engine.logs import BlockLog, block_logger, install_stream_routing, routed
from blockyard.engine.sensors import poll_sensor
from blockyard import runtime
from blockyard.dataset_hints import network_dataset_hint
from blockyard.errors import (
    BlockLoadError,
    BlockSignatureError,
    BlockTestFailed,
    BlockTimeout,
    BlockyardError,
)


@dataclass
class BlockTask:
    run_id: int
    node_uuid: str
    block_uuid: str
    block_type: str
    file_path: Path
    inputs: list[Any]
    kwargs: dict[str, Any]
    log_path: Path | str  # made a Path only if the block writes a line
    retry_config: dict | None = None
    timeout: float | None = None
    run_tests: bool = True
    condition_files: list[Path] = field(default_factory=list)
    callback_files: list[Path] = field(default_factory=list)
    # Process/Dask executors pass a store URL instead of a live store object.
    store: Any = None
    store_url: str | None = None
    keep_outputs_in_memory: bool = True
    import_paths: list[str] = field(default_factory=list)
    context: Any = None  # blockyard.runtime.BlockContext
    progress: Any = None  # callable(dict) for runtime.report_progress (in-process only)
    # The source the runner read (and keyed the cache on): run exactly that code.
    source: str | None = None
    code_hash: str | None = None
    # Sensors: seconds between polls, the run's cancel event (threading.Event) and a
    # callable(polls) told after every poll that returned False.
    poke_interval: float = 60.0
    cancel: Any = None
    on_poll: Any = None
    # "module:function" names called once per process before a block file loads: the
    # layers above the engine inject what block code needs (the mage_ai import shim).
    prelude: tuple[str, ...] = ()


@dataclass
class TestResult:
    name: str
    passed: bool
    error: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "error": self.error}


@dataclass(slots=True)  # one kept per block run: no instance dict (less for the GC to walk)
class Outcome:
    node_uuid: str
    status: str  # completed | failed | condition_failed | cancelled (a polling sensor)
    outputs: list[Any] | None = None
    digest: str | None = None
    output_ref: str | None = None
    error: str | None = None
    error_details: dict | None = None
    traceback: str | None = None
    attempts: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    # A list once @test functions ran; the shared empty tuple until then (one list less
    # kept per block run).
    tests: list[TestResult] | tuple = ()
    summaries: list[dict] | None = None
    log_path: str | None = None

    @classmethod
    def from_exception(cls, node_uuid: str, exc: BaseException) -> "Outcome":
        """An executor (or loading the inputs) raised instead of returning an Outcome."""
        oc = cls(node_uuid=node_uuid, status="failed")
        if isinstance(exc, BlockyardError):
            oc.error, oc.error_details = str(exc), exc.to_dict()
        else:
            oc.error = f"block '{node_uuid}': {type(exc).__name__}: {exc}"
            oc.error_details = {"block": node_uuid}
        oc.traceback = "".join(tb_module.format_exception(exc))
        oc.started_at = oc.completed_at = _now()
        return oc

    @property
    def duration(self) -> float | None:
        if self.started_at and self.completed_at:
            return (self.completed_at - self.started_at).total_seconds()
        return None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _split_outputs(value: Any) -> list[Any]:
    # Mage stores a tuple return as output_0..N; anything else is one output.
    if isinstance(value, tuple):
        return list(value)
    return [value]


def call_block_function(
    fn: Callable, inputs: list[Any], kwargs: dict[str, Any], *, file: Path, block: str
) -> Any:
    required, maximum, var_kw, names = positional_capacity(fn)
    n = len(inputs)
    if n < required or (maximum is not None and n > maximum):
        want = f"{required}" if maximum == required else (
            f"{required} to {maximum}" if maximum is not None else f"at least {required}"
        )
        raise BlockSignatureError(
            f"{fn.__name__}() takes {want} positional argument(s) but the block has "
            f"{n} upstream input(s)",
            file=file,
            line=def_line(fn),
            block=block,
            hint="one positional parameter per upstream block, in upstream_blocks order "
            "(add *args to accept more)",
        )
    if var_kw:
        return fn(*inputs, **kwargs)
    return fn(*inputs, **{k: v for k, v in kwargs.items() if k in names})


def _run_with_timeout(call: Callable[[], Any], timeout: float | None, task: BlockTask) -> Any:
    if not timeout:
        return call()
    result: dict[str, Any] = {}
    ctx = contextvars.copy_context()  # the log routing and runtime context go along

    def target() -> None:
        try:
            result["value"] = ctx.run(call)
        except BaseException as exc:  # re-raised in the caller
            result["error"] = exc

    worker = threading.Thread(target=target, name=f"block-{task.node_uuid}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise BlockTimeout(
            f"timed out after {timeout:g} s", file=task.file_path, block=task.node_uuid
        )
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _retry_delays(cfg: dict | None) -> list[float]:
    if not cfg:
        return []
    retries = int(cfg.get("retries") or 0)
    delay = float(cfg.get("delay") or 0)
    max_delay = cfg.get("max_delay")
    backoff = bool(cfg.get("exponential_backoff"))
    delays = []
    for i in range(retries):
        d = delay * (2**i) if backoff else delay
        if max_delay is not None:
            d = min(d, float(max_delay))
        delays.append(d)
    return delays


def _error_details(exc: BaseException, task: BlockTask) -> dict:
    if isinstance(exc, BlockyardError):
        d = exc.to_dict()
        d.setdefault("block", task.node_uuid)
        if not d.get("block"):
            d["block"] = task.node_uuid
        return d
    return {
        "message": f"{type(exc).__name__}: {exc}",
        "file": str(task.file_path),
        "line": user_line(exc, str(task.file_path)),
        "block": task.node_uuid,
        "pipeline": None,
        "hint": network_dataset_hint(exc),
    }


def _format_error(exc: BaseException, task: BlockTask) -> str:
    if isinstance(exc, BlockyardError):
        return str(exc)
    line = user_line(exc, str(task.file_path))
    where = f"{task.file_path}:{line}" if line else str(task.file_path)
    hint = network_dataset_hint(exc)  # a known dataset's URL unreachable: point to the mirror
    return f"{where}: block '{task.node_uuid}': {type(exc).__name__}: {exc}" + (f" ({hint})" if hint else "")


def _load_extra(paths: list[Path], block: str) -> list[LoadedBlock]:
    return [load_block(p, block, require_main=False) for p in paths]


def execute_block(task: BlockTask) -> Outcome:
    """Run one block run to completion; never raises for user errors."""
    ensure_import_paths(*task.import_paths)
    run_prelude(task.prelude)
    install_stream_routing()
    log = BlockLog(task.log_path)
    outcome = Outcome(node_uuid=task.node_uuid, status="failed", started_at=_now())
    logger = block_logger(task.node_uuid, log)
    kwargs = dict(task.kwargs)
    kwargs["logger"] = logger
    loaded: LoadedBlock | None = None
    ctx_token = runtime.current.set(task.context)
    progress_token = runtime.progress_sink.set(task.progress)
    try:
        with routed(log):
            log.hold("start block %s (run %s)", task.node_uuid, task.run_id)
            try:
                loaded = load_block(
                    task.file_path, task.block_uuid, source=task.source, code_hash=task.code_hash
                )
                extras = _load_extra(task.condition_files, task.block_uuid)
                if not _conditions_pass(loaded, extras, task, kwargs):
                    outcome.status = "condition_failed"
                    log.line("condition was false: block skipped", hold=True)
                    return outcome
                if task.block_type == "sensor":
                    value = poll_sensor(_sensor_call(loaded, task, kwargs), task, outcome, log)
                    if value is None:
                        outcome.status = "cancelled"
                        log.line("cancelled while polling", hold=True)
                        return outcome
                    outputs = _split_outputs(value)
                else:
                    outputs = _call_with_retries(loaded, task, kwargs, outcome, log)
                if task.run_tests and loaded.tests:
                    _run_tests(loaded, outputs, kwargs, outcome, task, log)
                _persist(task, outputs, outcome)
                outcome.outputs = outputs if task.keep_outputs_in_memory else None
                outcome.status = "completed"
            except BaseException as exc:  # noqa: BLE001 - reported, not raised
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                outcome.status = "failed"
                outcome.error = _format_error(exc, task)
                outcome.error_details = _error_details(exc, task)
                outcome.traceback = "".join(tb_module.format_exception(exc))
                log.line(outcome.error, "ERROR")
                log.write(outcome.traceback)
            finally:
                outcome.completed_at = _now()
                _run_callbacks(loaded, task, kwargs, outcome, log)
                log.hold(
                    "end block %s: %s in %.3fs", task.node_uuid, outcome.status,
                    (outcome.completed_at - outcome.started_at).total_seconds(),
                )
    finally:
        runtime.current.reset(ctx_token)
        runtime.progress_sink.reset(progress_token)
        if log.created:
            outcome.log_path = str(log.path)
        log.close()
        # The executor may hold the task a moment after the outcome is handed over (a
        # pool's work item): drop the inputs now, so an upstream output is freed as soon
        # as its last reader finished, not when the pool thread gets round to it.
        task.inputs = []
    return outcome


def _conditions_pass(
    loaded: LoadedBlock, extras: list[LoadedBlock], task: BlockTask, kwargs: dict
) -> bool:
    if not (loaded.conditions or extras):
        return True
    fns = list(loaded.conditions)
    for extra in extras:
        fns.extend(extra.conditions)
    for fn in fns:
        result = call_block_function(
            fn, _fit_inputs(fn, task.inputs), kwargs, file=task.file_path, block=task.node_uuid
        )
        if not result:
            return False
    return True


def _fit_inputs(fn: Callable, inputs: list[Any]) -> list[Any]:
    """Tests, conditions and callbacks take as many positionals as they declare."""
    _required, maximum, _kw, _names = positional_capacity(fn)
    return list(inputs) if maximum is None else list(inputs[:maximum])


def _call_with_retries(
    loaded: LoadedBlock, task: BlockTask, kwargs: dict, outcome: Outcome, log: BlockLog
) -> list[Any]:
    delays = _retry_delays(task.retry_config)
    attempt = 0
    while True:
        attempt += 1
        outcome.attempts = attempt
        try:
            value = _run_with_timeout(
                lambda: call_block_function(
                    loaded.main, task.inputs, kwargs, file=task.file_path, block=task.node_uuid
                ),
                task.timeout,
                task,
            )
            return _split_outputs(value)
        except (BlockSignatureError, BlockLoadError):
            raise  # retrying cannot fix the code
        except Exception as exc:
            if attempt > len(delays):
                raise
            wait = delays[attempt - 1]
            log.line(
                f"attempt {attempt} failed ({type(exc).__name__}: {exc}); retrying in {wait:g}s",
                "WARNING",
            )
            if wait:
                time.sleep(wait)


def _sensor_call(loaded: LoadedBlock, task: BlockTask, kwargs: dict) -> Callable:
    def call(timeout: float | None) -> Any:
        return _run_with_timeout(
            lambda: call_block_function(
                loaded.main, task.inputs, kwargs, file=task.file_path, block=task.node_uuid
            ),
            timeout,
            task,
        )

    return call


def _run_tests(
    loaded: LoadedBlock,
    outputs: list[Any],
    kwargs: dict,
    outcome: Outcome,
    task: BlockTask,
    log: BlockLog,
) -> None:
    failures = []
    outcome.tests = []
    for fn in loaded.tests:
        try:
            _required, maximum, var_kw, names = positional_capacity(fn)
            args = outputs if maximum is None else outputs[:maximum]
            if var_kw:
                fn(*args, **kwargs)
            else:
                fn(*args, **{k: v for k, v in kwargs.items() if k in names})
            outcome.tests.append(TestResult(fn.__name__, True))
            log.line(f"test {fn.__name__} passed", hold=True)
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            outcome.tests.append(TestResult(fn.__name__, False, message))
            line = user_line(exc, str(task.file_path))
            failures.append((fn, message, line))
            log.line(f"test {fn.__name__} failed: {message}", "ERROR")
    if failures:
        fn, message, line = failures[0]
        passed = sum(t.passed for t in outcome.tests)
        raise BlockTestFailed(
            f"test {fn.__name__} failed: {message} ({passed}/{len(outcome.tests)} tests passed)",
            file=task.file_path,
            line=line,
            block=task.node_uuid,
        )


def _persist(task: BlockTask, outputs: list[Any], outcome: Outcome) -> None:
    store = task.store
    if store is None and task.store_url:
        from blockyard.store import ArtifactStore

        store = ArtifactStore(task.store_url)
    if store is None:
        return
    manifest = store.save_outputs(task.run_id, task.node_uuid, outputs)
    outcome.digest = manifest.digest
    outcome.output_ref = f"{task.run_id}/{task.node_uuid}"
    outcome.summaries = [o.get("summary") for o in manifest.outputs]


def _run_callbacks(
    loaded: LoadedBlock | None, task: BlockTask, kwargs: dict, outcome: Outcome, log: BlockLog
) -> None:
    if outcome.status not in ("completed", "failed"):
        return
    status = "success" if outcome.status == "completed" else "failure"
    fns: list[Callable] = []
    if loaded is not None and loaded.callbacks:
        fns.extend(loaded.callbacks_for(status))
    if task.callback_files:
        try:
            for extra in _load_extra(task.callback_files, task.block_uuid):
                fns.extend(extra.callbacks_for(status))
        except BlockyardError as exc:
            log.line(f"callback file could not be loaded: {exc}", "ERROR")
    if not fns:
        return
    cb_kwargs = dict(kwargs)
    cb_kwargs["status"] = status
    if outcome.error:
        cb_kwargs["__error"] = outcome.error
        cb_kwargs["error"] = outcome.error
    parent = outcome.outputs if outcome.outputs is not None else []
    parent_data = parent[0] if len(parent) == 1 else parent
    for fn in fns:
        try:
            _required, maximum, var_kw, names = positional_capacity(fn)
            args = [parent_data] if (maximum is None or maximum >= 1) else []
            if var_kw:
                fn(*args, **cb_kwargs)
            else:
                fn(*args, **{k: v for k, v in cb_kwargs.items() if k in names})
            log.line(f"{status} callback {fn.__name__} done", hold=True)
        except Exception as exc:  # a callback never changes the block's status
            log.line(f"{status} callback {fn.__name__} failed: {type(exc).__name__}: {exc}", "ERROR")
