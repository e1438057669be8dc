"""One pipeline run, read top to bottom.

    setup   (engine/setup.py)    check everything, plan, select blocks, read sources
    state   (engine/state.py)    nodes keyed by (block, fan-out path), readiness, Status
    outputs (engine/outputs.py)  live outputs, released once their last reader started
    reuse   (engine/reuse.py)    cache keys; a cache hit or an earlier attempt's block
    events  (engine/events.py)   everything that happens, to subscribers: the run
                                 history (engine/history.py), on_event, a lease guard
    executor (engine/executors.py) where user code runs: submit + can_submit

The loop runs on the calling thread and is the only one that touches the state and
emits events; executors hand results back through a queue.
"""
from __future__ import annotations

import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from blockyard import masking
from blockyard.engine import events as ev
from blockyard.engine.execute import BlockTask, Outcome, execute_block
from blockyard.engine.executors import Executor, executor_for, run_inline
from blockyard.engine.history import RunHistory, outcome_metrics
from blockyard.engine.outputs import LiveOutputs
from blockyard.engine.plan import clone_labels
from blockyard.engine.reuse import Reuse
from blockyard.engine.sensors import Poll, poke_interval, start_sensor
from blockyard.engine.setup import prepare
from blockyard.engine.tasks import TaskFactory
from blockyard.engine.state import Node, RunState, Status
from blockyard.errors import BlockyardError


class PipelineRunner:
    def __init__(
        self,
        session: Any,
        spec: Any,
        *,
        variables: dict | None = None,
        trigger_variables: dict | None = None,
        use_cache: bool | None = None,
        executor: str | Executor | None = None,  # None: the pipeline's executor_type, else thread
        max_workers: int | None = None,
        run_tests: bool = True,
        block: str | None = None,
        from_block: str | None = None,
        with_upstream: bool = False,
        on_event: Callable[[dict], None] | None = None,
        subscribers: list[ev.Subscriber] | None = None,
        history: RunHistory | None = None,
        execution_date: datetime | None = None,
        trigger_id: int | None = None,
        run_id: int | None = None,
    ) -> None:
        self.session, self.spec, self.project = session, spec, spec.project.name
        self.variables = {**(spec.variables or {}), **(trigger_variables or {}), **(variables or {})}
        self.use_cache, self.executor_kind, self.max_workers = use_cache, executor, max_workers
        self.run_tests, self.only_block, self.from_block, self.with_upstream = run_tests, block, from_block, with_upstream
        self.execution_date = execution_date or datetime.now(timezone.utc)
        self.trigger_id, self.run_id = trigger_id, run_id
        self.error, self.error_details = None, None  # the run's first failure
        self.history, self._inline = history or RunHistory(session.db), False
        self.events = ev.EventBus(subscribers)
        self.emit = self.events.emit  # everything that happens goes out through the bus
        self.events.subscribe(self.history, critical=True, first=True)  # a run is its history
        if on_event is not None:
            self.events.subscribe(ev.on_event_subscriber(on_event))
        self.by_uuid: dict[str, Node] = {}
        self._cancel = threading.Event()
        self._done: "queue.SimpleQueue[tuple[Node, Any]]" = queue.SimpleQueue()

    def cancel(self) -> None:
        """Thread-safe: nothing new starts; a polling sensor stops at once."""
        self._cancel.set()

    # ---------------------------------------------------------------- the run
    def run(self) -> "RunEnd":
        from blockyard.engine.gdp import register_codec
        from blockyard.engine.loader import ensure_import_paths
        from blockyard.engine.logs import install_stream_routing

        ensure_import_paths(self.session.workspace.root.parent, self.session.workspace.root)
        install_stream_routing()
        register_codec()  # stored global-data-product references must load in any process
        try:
            self.setup = prepare(self)
            self.executor = executor_for(self.spec, self.executor_kind, self.max_workers)
            self._room = getattr(self.executor, "can_submit", None) or (lambda: True)
            self._inline = getattr(self.executor, "inline_when_alone", False)
        except BlockyardError as exc:
            return self._fail_before_start(exc)
        blocks = list(self.setup.selected)
        if self.run_id is None:
            self.run_id = self.history.create_run(
                project=self.project, pipeline_uuid=self.spec.uuid, variables=self.variables,
                execution_date=self.execution_date, block_uuids=blocks, trigger_id=self.trigger_id,
            )
        else:  # a queued run (scheduler, API, retry, resume), now executed here
            self.history.start_run(self.run_id, blocks)
        self.state = RunState(self.setup.plan, self.setup.selected, self.setup.externals)
        self.by_uuid = self.state.by_uuid
        self.outputs = LiveOutputs(self.session.store)
        self.reuse = Reuse(self)
        self.tasks = TaskFactory(self)
        self.emit(ev.RunStarted(self.run_id, blocks))
        try:
            self._loop()
        except BaseException:
            self.history.abandon()  # the run stays 'running'; recovery fails it
            raise
        finally:
            self.executor.shutdown()
        end = self._finish()
        self.state.release()
        return end

    def _loop(self) -> None:
        st = self.state
        self.running = 0
        self._created(st.create_nodes())
        while True:
            if self._cancel.is_set() and not st.cancelled:
                st.cancel()
                self._report_settled()
            while st.ready and not self._cancel.is_set() and (not self.running or self._room()):
                self._start(st.ready.pop())
            if not self.running:
                if st.ready and not st.cancelled:
                    continue  # a cancel came in while starting: settle the rest first
                break
            node, result = self._done.get()
            if isinstance(result, Poll):  # a sensor said False; it keeps polling
                interval = poke_interval(node.block.spec.configuration or {}, self.setup.settings, {})
                self.emit(ev.SensorWaiting(self.run_id, node.uuid, node.block.uuid, result.polls, interval))
                continue
            self.running -= 1
            self._complete(node, result)
        if st.cancelled:
            st.cancel_rest()
            self._report_settled()

    # ------------------------------------------------------------ starting
    def _start(self, node: Node) -> None:
        pb = node.block
        node.started = time.perf_counter()
        if pb.type == "global_data_product":
            return self._begin(node, None)
        hit = self.reuse.find(node)
        if hit is not None:  # completed by stored outputs: never executed again
            node.cache_hit, node.output_ref, node.digest = True, hit["output_ref"], hit.get("digest")
            self.outputs.release_inputs(node)
            return self._succeeded(node, None, None)
        try:  # only now load the inputs: a reused node never reads them
            by_ref = getattr(self.executor, "inputs_by_reference", False)
            args = self.outputs.refs(node) if by_ref else self.outputs.args(node)
        except Exception as exc:
            return self._complete(node, exc)
        self.outputs.release_inputs(node)
        self._begin(node, self.tasks.task(node, args))

    def _begin(self, node: Node, task: BlockTask | None) -> None:
        self.state.start(node)
        upstream = tuple(n.uuid for n in node.upstream)
        self.emit(ev.BlockStarted(self.run_id, node.uuid, node.block.uuid, upstream))
        self.running += 1
        done = self._done.put
        if task is None:  # a global data product: its producer may run first
            threading.Thread(target=self._gdp, args=(node,), name=f"gdp-{node.uuid}", daemon=True).start()
        elif node.block.type == "sensor":  # polls on a thread of its own, never a pool slot
            task.poke_interval = poke_interval(node.block.spec.configuration or {}, self.setup.settings, {})
            task.cancel = self._cancel
            task.on_poll = lambda polls, n=node: done((n, Poll(polls)))
            start_sensor(execute_block, task, lambda result, n=node: done((n, result)))
        elif self.running == 1 and not self.state.ready and self._inline:
            done((node, run_inline(task)))  # alone: on this thread (see ThreadExecutor)
        else:
            fut = self.executor.submit(task)
            fut.add_done_callback(lambda f, n=node: done((n, f.exception() or f.result())))

    def _gdp(self, node: Node) -> None:
        from blockyard.engine.gdp import resolve_global_data_product

        try:
            result: Any = resolve_global_data_product(self, node, run=self._run_producer)
        except BaseException as exc:  # noqa: BLE001 - the block's failure
            result = exc
        self._done.put((node, result))

    def _run_producer(self, spec: Any) -> "RunEnd":
        """How a global data product runs its producer pipeline: a run of its own."""
        runner = PipelineRunner(self.session, spec, use_cache=self.use_cache, run_tests=self.run_tests)
        return runner.run()

    # ---------------------------------------------------------- completion
    def _complete(self, node: Node, result: Any) -> None:
        oc = result if isinstance(result, Outcome) else Outcome.from_exception(node.uuid, result)
        if masking.active() and oc.status != "completed":  # errors show *** for secrets
            oc.error, oc.traceback = masking.mask(oc.error), masking.mask(oc.traceback)
            oc.error_details = masking.mask_data(oc.error_details)
        node.outcome = oc
        if oc.status == "completed":
            node.output_ref, node.digest = oc.output_ref, oc.digest
            # The live outputs move to self.outputs; the outcome keeps no second reference.
            outputs, oc.outputs = oc.outputs, None
            return self._succeeded(node, oc, outputs)
        if oc.status == "failed" and self.error is None:
            self.error, self.error_details = oc.error, oc.error_details
        self._finished(node, Status(oc.status), outcome=oc, error=oc.error)

    def _succeeded(self, node: Node, oc: Outcome | None, outputs: list[Any] | None) -> None:
        """Ran well or reused: hold the outputs, fan out a dynamic node, report."""
        self.outputs.save(node, outputs)
        status, msg = Status.COMPLETED, None
        if node.block.dynamic:
            try:
                _items, meta = self.outputs.items(node)
                self.state.expand(node, clone_labels(meta))
            except Exception as exc:
                msg = f"block '{node.uuid}': {exc}"
                status = Status.FAILED
                if oc is not None:
                    oc.status, oc.error = "failed", msg
                if self.error is None:
                    self.error, self.error_details = msg, {"block": node.uuid}
        self._finished(
            node, status, outcome=oc, cache_hit=node.cache_hit, output_ref=node.output_ref,
            digest=node.digest, cache_key=node.cache_key, error=msg,
        )
        self.outputs.save(node, None)  # released if no reader waits for it
        if node.block.dynamic and status is Status.COMPLETED:
            self._created(self.state.create_nodes())

    def _finished(self, node: Node, status: Status, **fields: Any) -> None:
        oc = fields.get("outcome")
        self.emit(ev.BlockFinished(
            self.run_id, node.uuid, node.block.uuid, status,
            duration=time.perf_counter() - node.started if node.started else None,
            tests=[t.to_dict() for t in oc.tests] if oc is not None and oc.tests else (),
            metrics=outcome_metrics(node.block.type, oc), **fields,
        ))
        self.state.finish(node, status)
        self._report_settled()

    def _report_settled(self) -> None:
        for node in self.state.take_settled():
            self.emit(ev.BlockFinished(self.run_id, node.uuid, node.block.uuid, node.status))

    def _created(self, nodes: list[Node]) -> None:
        for node in nodes:
            self.outputs.track(node)
            if node.path:
                self.emit(ev.NodeCreated(self.run_id, node.uuid, node.block.uuid, node.dynamic_index))
        self._report_settled()

    # -------------------------------------------------------------- the end
    def _finish(self) -> "RunEnd":
        st = self.state
        stuck, missing = st.never_ran()
        if (stuck or missing) and not st.cancelled:  # never report blocks that did not run
            names = [n.uuid for n in stuck] + missing
            msg = f"blocks never ran: {', '.join(names[:10])}" + (" ..." if len(names) > 10 else "")
            for n in stuck:
                n.status = Status.FAILED
                self.emit(ev.BlockFinished(self.run_id, n.uuid, n.block.uuid, Status.FAILED, error=msg))
            for u in missing:
                self.emit(ev.BlockFinished(self.run_id, u, u, Status.FAILED, error=msg))
            if self.error is None:
                self.error, self.error_details = msg, {"message": msg}
        for uuid, status in st.fanned_out_statuses().items():  # the block's own row
            self.emit(ev.FanOutFinished(self.run_id, uuid, status))
        status = st.run_status(len(missing) if not st.cancelled else 0)
        self.emit(ev.RunFinished(self.run_id, status, self.error, self.error_details))
        return RunEnd(self, status)

    def _fail_before_start(self, exc: BlockyardError) -> "RunEnd":
        self.error, self.error_details = str(exc), exc.to_dict()
        blocks = [exc.block] if getattr(exc, "block", None) else []
        if self.run_id is not None:
            self.history.start_run(self.run_id, blocks)
        else:
            self.run_id = self.history.create_run(
                project=self.project, pipeline_uuid=self.spec.uuid, variables=self.variables,
                execution_date=self.execution_date, block_uuids=blocks, trigger_id=self.trigger_id,
            )
        for b in blocks:
            self.emit(ev.BlockFinished(self.run_id, b, b, Status.FAILED, error=self.error))
        self.emit(ev.RunFinished(self.run_id, Status.FAILED, self.error, self.error_details))
        return RunEnd(self, Status.FAILED)


class RunEnd:
    """What a finished run hands back to the API layer."""

    def __init__(self, runner: PipelineRunner, status: Status) -> None:
        self.runner, self.status = runner, status
