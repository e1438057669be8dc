"""One pipeline run: nodes, dependencies, dynamic fan-out, caching, recording.

The runner owns the scheduling loop on the calling thread. User code runs only
in `execute_block` on an executor; the runner decides what is ready, checks the
cache, expands dynamic blocks, and records every state change through the
database's write-behind recorder.
"""
from __future__ import annotations

import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from blockyard import masking
from blockyard.engine import cache as cache_mod
from blockyard.engine.execute import BlockTask, Outcome, execute_block
from blockyard.engine.executors import Executor, InputRef, executor_for
from blockyard.engine.loader import compile_block, read_source
from blockyard.engine.plan import PlannedBlock, clone_labels, parse_dynamic_output, plan_pipeline
from blockyard.engine.sensors import Poll, poke_interval, start_sensor
from blockyard.errors import BlockLoadError, BlockyardError
from blockyard.runtime import BlockContext

GOOD = ("completed", "condition_failed")


@dataclass
class Input:
    kind: str  # whole | item | gather | external
    nodes: list["Node"] = field(default_factory=list)
    index: int | None = None
    value: Any = None
    digest: Any = None


@dataclass(eq=False)
class Node:
    uuid: str
    block: PlannedBlock
    path: tuple[int, ...]
    inputs: list[Input]
    dynamic_index: int | None = None
    waiting: int = 0
    bad_upstream: str | None = None
    dependents: list["Node"] = field(default_factory=list)
    status: str = "initial"
    outputs: list[Any] | None = None
    output_ref: str | None = None
    digest: str | None = None
    cache_hit: bool = False
    outcome: Outcome | None = None
    started: float = 0.0
    items: list[Any] | None = None  # parsed fan-out of a dynamic node
    cache_key: str | None = None
    pending: int = 0  # dependents that have not read this node's outputs yet


@dataclass
class _Expansion:
    n: int
    labels: list[str]


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
        execution_date: datetime | None = None,
        trigger_id: int | None = None,
        run_id: int | None = None,
    ) -> None:
        self.session = session
        self.spec = spec
        self.project = spec.project.name
        self.runtime_variables = dict(variables or {})
        self.trigger_variables = dict(trigger_variables or {})
        self.use_cache = use_cache
        self.executor_kind = executor
        self.max_workers = max_workers
        self.run_tests = run_tests
        self.only_block = block
        self.from_block = from_block
        self.with_upstream = with_upstream
        self.on_event = on_event
        self.execution_date = execution_date or datetime.now(timezone.utc)
        self.trigger_id = trigger_id
        self.run_id = run_id
        self.nodes: dict[tuple[str, tuple[int, ...]], Node] = {}
        self.by_uuid: dict[str, Node] = {}
        self.expansions: dict[tuple[str, tuple[int, ...]], _Expansion] = {}
        self._done_q: "queue.SimpleQueue[tuple[Node, Outcome | BaseException]]" = queue.SimpleQueue()
        self._cancel = threading.Event()
        # A block's completion was queued in the recorder but is not in the database yet.
        self._unflushed = False
        self._heartbeat = False  # this process heartbeats the run (no worker lease)
        self._done_before: dict[str, dict] = {}
        self.error: str | None = None
        self.error_details: dict | None = None
        self.run_settings: dict = {}
        self.recover_runs: list[int] = []  # earlier attempts of this run (resume, retry)

    # ---------------------------------------------------------------- setup
    def cancel(self) -> None:
        self._cancel.set()

    def _variables(self) -> dict:
        merged = dict(self.spec.variables or {})
        merged.update(self.trigger_variables)
        merged.update(self.runtime_variables)
        return merged

    def _emit(self, **event: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a broken progress view must not break the run
                pass

    def run(self) -> "RunState":
        db = self.session.db
        ws = self.session.workspace
        from blockyard.engine.loader import ensure_import_paths

        ensure_import_paths(ws.root.parent, ws.root)
        from blockyard.engine.logs import install_stream_routing

        install_stream_routing()
        self.variables = self._variables()
        self.store = self.session.store
        from blockyard.engine.gdp import register_codec

        register_codec()  # stored global-data-product references must load in any process
        try:
            self.spec.validate()
            self.plan = plan_pipeline(self.spec)
            self._read_run_row()
            self._resolve_cache_settings()
            self.selected = self._select()
            self._sources = self._read_sources()
            self._externals = self._external_inputs()
            self.executor = executor_for(self.spec, self.executor_kind, self.max_workers)
        except BlockyardError as exc:
            return self._fail_before_start(exc)
        self.callback_files, self.condition_files = self._attached_files()
        self._ws_root = ws.root
        self._policies: dict[str, tuple] = {}  # per block: policy and its fixed key parts
        if self.run_id is None:
            self.run_id = db.create_pipeline_run(
                project=self.project,
                pipeline_uuid=self.spec.uuid,
                variables=self.variables,
                execution_date=self.execution_date,
                block_uuids=list(self.selected),
                status="running",
                trigger_id=self.trigger_id,
                pid=os.getpid(),
                hostname=socket.gethostname(),
            )
            # No worker lease covers this run: heartbeat it (a worker fails it if we die).
            from blockyard.engine import heartbeat

            heartbeat.register(db, self.run_id)
            self._heartbeat = True
        else:  # a run queued by the scheduler or the API, now claimed by this process
            # A resumed run keeps the blocks it completed before it was interrupted.
            self._done_before = {
                b["block_uuid"]: b
                for b in db.get_block_runs(self.run_id)
                if b.get("status") == "completed" and b.get("output_ref")
            }
            db.start_pipeline_run(
                self.run_id, list(self.selected), pid=os.getpid(), hostname=socket.gethostname()
            )
        self.rec = db.recorder()
        self.log_dir = self.session.logs_dir / str(self.run_id)
        self._base_kwargs = {
            **self.variables,
            "execution_date": self.execution_date,
            "ds": self.execution_date.strftime("%Y-%m-%d"),
            "env": os.environ.get("BLOCKYARD_ENV", "dev"),
            "pipeline_uuid": self.spec.uuid,
            "project_uuid": self.project,
            "pipeline_run_id": self.run_id,
            "context": {},
        }
        self._import_paths = [str(ws.root.parent), str(ws.root)]
        self._emit(type="run_started", run_id=self.run_id, blocks=list(self.selected))
        try:
            try:
                self._loop()
            finally:
                self.executor.shutdown()
            return self._finish()
        finally:
            if self._heartbeat:
                from blockyard.engine import heartbeat

                heartbeat.unregister(self.run_id)

    def _read_run_row(self) -> None:
        """A queued run (API/worker) may carry settings: its block selection
        (`{"block": B, "with_upstream": true}`; explicit arguments win), `cache`, a
        sensor `poke_interval`. A resumed run (resume_count > 0) or a retry
        (`retry_of`) reuses the completed blocks of its earlier attempts."""
        if self.run_id is None:
            return
        db = self.session.db
        try:
            row = db.get_pipeline_run(self.run_id)
        except Exception:  # noqa: BLE001 - no settings then: the whole pipeline
            return
        row = row or {}
        settings = row.get("settings") or {}
        self.run_settings = settings if isinstance(settings, dict) else {}
        if row.get("resume_count"):
            self.recover_runs.append(int(self.run_id))
        earlier = row.get("retry_of")
        while earlier is not None and len(self.recover_runs) < 50:  # the chain of retries
            self.recover_runs.append(int(earlier))
            try:
                earlier = (db.get_pipeline_run(int(earlier)) or {}).get("retry_of")
            except Exception:  # noqa: BLE001
                break
        if self.only_block or self.from_block:
            return
        if isinstance(self.run_settings.get("block"), str) and self.run_settings["block"]:
            settings = self.run_settings
            self.only_block = settings["block"]
            self.with_upstream = bool(settings.get("with_upstream", self.with_upstream))

    def _resolve_cache_settings(self) -> None:
        """Caching is opt-in: the caller's `use_cache`, else the queued run's `cache`
        setting, else the pipeline's `cache: true`; a block's `configuration.cache`
        decides for that block (see _caching). Bad settings fail before anything runs."""
        raw = getattr(self.spec, "raw", None)
        pipeline_cache = raw.get("cache") if isinstance(raw, dict) else None
        if pipeline_cache is not None and not isinstance(pipeline_cache, bool):
            raise BlockyardError(
                f"'cache' must be true or false, not {pipeline_cache!r}",
                file=self.spec.path,
                pipeline=self.spec.uuid,
            )
        self.pipeline_cache = bool(pipeline_cache)
        if self.use_cache is None and isinstance(self.run_settings.get("cache"), bool):
            self.use_cache = self.run_settings["cache"]
        for uuid, pb in self.plan.items():
            cfg = pb.spec.configuration or {}
            where = {"file": self.spec.path, "block": uuid, "pipeline": self.spec.uuid}
            if "cache" in cfg and not isinstance(cfg["cache"], bool):
                raise BlockyardError(
                    f"configuration.cache must be true or false, not {cfg['cache']!r}", **where
                )
            try:
                cache_mod.policy_from(cfg.get("cache_policy"))
            except ValueError as exc:
                raise BlockyardError(f"configuration.cache_policy: {exc}", **where) from None
            if pb.type == "sensor":
                poke_interval(cfg, self.run_settings, where)

    def _caching(self, pb: PlannedBlock) -> bool:
        if self.use_cache is False:
            return False
        own = cache_mod.cache_setting(pb.spec.configuration)
        if own is not None:
            return own
        return bool(self.use_cache) or self.pipeline_cache

    def _select(self) -> dict[str, PlannedBlock]:
        for name in (self.only_block, self.from_block):
            if name and name not in self.plan:
                raise BlockyardError(
                    f"no block '{name}' in pipeline '{self.spec.uuid}'",
                    file=self.spec.path,
                    hint="blocks: " + ", ".join(self.plan),
                )
        if self.only_block and self.with_upstream:
            keep = {self.only_block}
            for uuid in reversed(list(self.plan)):  # reverse topological order
                if uuid in keep:
                    keep.update(self.plan[uuid].upstream)
            return {u: pb for u, pb in self.plan.items() if u in keep}
        if self.only_block:
            return {self.only_block: self.plan[self.only_block]}
        if self.from_block:
            keep = {self.from_block}
            for uuid, pb in self.plan.items():  # topological order
                if any(u in keep for u in pb.upstream):
                    keep.add(uuid)
            return {u: pb for u, pb in self.plan.items() if u in keep}
        return dict(self.plan)

    def _read_sources(self) -> dict[str, tuple[str, str]]:
        """Read and syntax-check every selected block before anything runs."""
        sources = {}
        for uuid, pb in self.selected.items():
            if pb.type == "global_data_product":
                continue
            path = pb.spec.file_path
            if path is None:
                raise BlockLoadError(
                    f"block type '{pb.type}' has no file to run", block=uuid, file=self.spec.path
                )
            source, code_hash = read_source(Path(path), uuid)
            compile_block(Path(path), uuid, source, code_hash)
            sources[uuid] = (source, code_hash, Path(path))
        return sources

    def _attached_files(self) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
        callbacks: dict[str, list[Path]] = {}
        conditions: dict[str, list[Path]] = {}
        for attr, target in (("callbacks", callbacks), ("conditionals", conditions)):
            for extra in getattr(self.spec, attr, None) or []:
                if extra.file_path is None:
                    continue
                for u in extra.upstream_blocks or []:
                    target.setdefault(u, []).append(Path(extra.file_path))
        return callbacks, conditions

    def _fail_before_start(self, exc: BlockyardError) -> "RunState":
        db = self.session.db
        self.error = str(exc)
        self.error_details = exc.to_dict()
        blocks = [exc.block] if getattr(exc, "block", None) else []
        if self.run_id is not None:
            db.start_pipeline_run(self.run_id, blocks, pid=os.getpid(), hostname=socket.gethostname())
        else:
            self.run_id = db.create_pipeline_run(
                project=self.project,
                pipeline_uuid=self.spec.uuid,
                variables=self.variables,
                execution_date=self.execution_date,
                block_uuids=blocks,
                status="running",
                trigger_id=self.trigger_id,
                pid=os.getpid(),
                hostname=socket.gethostname(),
            )
        if blocks:
            rec = db.recorder()
            rec.update_block_run(
                self.run_id, blocks[0], status="failed", error=self.error
            )
            rec.close()
        db.finish_pipeline_run(
            self.run_id, "failed", error=self.error, error_details=self.error_details
        )
        self._emit(type="run_finished", run_id=self.run_id, status="failed", error=self.error)
        return RunState(self, "failed")

    # ------------------------------------------------------------ the loop
    def _loop(self) -> None:
        self.ready: list[Node] = []
        self.running = 0
        self._create_nodes()
        limit = getattr(self.executor, "max_workers", None) or 10_000
        while self.ready or self.running:
            while self.ready and not self._cancel.is_set():
                node = self.ready.pop()
                if self._unflushed and any(inp.nodes for inp in node.inputs):
                    self._flush_completions()
                self._start(node)
            if self._cancel.is_set():
                for node in self.ready:
                    self._settle(node, "cancelled")
                self.ready.clear()
                if not self.running:
                    break
            if not self.running:
                continue
            node, result = self._done_q.get()
            if isinstance(result, Poll):  # a sensor said False; it keeps polling
                self._sensor_waiting(node, result.polls)
                continue
            self.running -= 1
            self._complete(node, result)
        if self._cancel.is_set():
            for node in self.by_uuid.values():
                if node.status in ("initial", "queued"):
                    self._settle(node, "cancelled")
        del limit

    def _flush_completions(self) -> None:
        """Make the completions recorded so far durable before a dependent starts: a
        crash after this point never runs a completed block again on recovery. One
        flush covers every completion of a wave (measured in bench/bench_engine.py)."""
        self._unflushed = False
        try:
            self.rec.write_now()
        except Exception as exc:  # the run goes on; its history may be incomplete
            import logging

            logging.getLogger("blockyard.engine").warning("run %s: %s", self.run_id, exc)

    # ----------------------------------------------------- node creation
    def _paths(self, lineage: tuple[str, ...]) -> list[tuple[tuple[int, ...], tuple[str, ...]]]:
        result: list[tuple[tuple[int, ...], tuple[str, ...]]] = [((), ())]
        for dyn in lineage:
            nxt = []
            for path, labels in result:
                exp = self.expansions.get((dyn, path))
                if exp is None:
                    continue
                for i in range(exp.n):
                    nxt.append((path + (i,), labels + (exp.labels[i],)))
            result = nxt
        return result

    def _create_nodes(self) -> None:
        """Create every node whose fan-out is known (start, and after each expansion)."""
        for pb in self.selected.values():
            for path, labels in self._paths(pb.lineage):
                if (pb.uuid, path) in self.nodes:
                    continue
                inputs = self._node_inputs(pb, path)
                if inputs is None:
                    continue
                uuid = pb.uuid if not path else pb.uuid + "".join(f":{lab}" for lab in labels)
                node = Node(uuid, pb, path, inputs, dynamic_index=path[-1] if path else None)
                self.nodes[(pb.uuid, path)] = node
                self.by_uuid[uuid] = node
                if path:
                    self.rec.add_block_run(
                        self.run_id,
                        uuid,
                        status="initial",
                        base_block_uuid=pb.uuid,
                        dynamic_index=node.dynamic_index,
                    )
                deps = {id(n): n for inp in inputs for n in inp.nodes}
                for dep in deps.values():
                    dep.pending += 1
                    if dep.status in ("initial", "queued", "running"):
                        node.waiting += 1
                        dep.dependents.append(node)
                    elif dep.status not in GOOD:
                        node.bad_upstream = node.bad_upstream or dep.status
                    elif dep.status == "condition_failed":
                        node.bad_upstream = node.bad_upstream or "condition_failed"
                if node.waiting == 0:
                    self._make_ready(node)

    def _node_inputs(self, pb: PlannedBlock, path: tuple[int, ...]) -> list[Input] | None:
        inputs: list[Input] = []
        for u in pb.upstream:
            up = self.plan[u]
            depth = len(up.lineage)
            if u not in self.selected:
                inputs.append(self._externals[u])
                continue
            if up.dynamic:
                parent = self.nodes.get((u, path[:depth]))
                if parent is None:
                    return None
                inputs.append(Input("item", [parent], index=path[depth]))
            elif up.reduce_output and depth:
                prefix = path[: depth - 1]
                exp = self.expansions.get((up.lineage[-1], prefix))
                if exp is None:
                    return None
                clones = [self.nodes.get((u, prefix + (i,))) for i in range(exp.n)]
                if any(c is None for c in clones):
                    return None
                inputs.append(Input("gather", clones))  # type: ignore[arg-type]
            else:
                dep = self.nodes.get((u, path[:depth]))
                if dep is None:
                    return None
                inputs.append(Input("whole", [dep]))
        return inputs

    def _external_inputs(self) -> dict[str, Input]:
        """Upstream outputs stored by earlier runs, for --block / --from-block."""
        externals: dict[str, Input] = {}
        for pb in self.selected.values():
            for u in pb.upstream:
                if u in self.selected or u in externals:
                    continue
                if self.plan[u].lineage or self.plan[u].dynamic:
                    raise BlockyardError(
                        f"cannot run from the stored outputs of dynamic block '{u}'",
                        block=pb.uuid,
                        pipeline=self.spec.uuid,
                        hint="run the whole pipeline instead",
                    )
                externals[u] = self._external_input(pb, u)
        return externals

    def _external_input(self, pb: PlannedBlock, u: str) -> Input:
        row = self.session.db.latest_block_run(self.project, self.spec.uuid, u)
        if not row or not row.get("output_ref"):
            raise BlockyardError(
                f"upstream block '{u}' has no stored output yet",
                block=pb.uuid,
                pipeline=self.spec.uuid,
                hint=f"run the pipeline once, or run with --from-block {u}",
            )
        run_id, node_uuid = row["output_ref"].split("/", 1)
        outputs = self.store.load_outputs(int(run_id), node_uuid)
        return Input("external", value=_as_argument(outputs), digest=row.get("digest"))

    # ---------------------------------------------------------- starting
    def _make_ready(self, node: Node) -> None:
        if node.bad_upstream:
            status = "condition_failed" if node.bad_upstream == "condition_failed" else (
                "cancelled" if node.bad_upstream == "cancelled" else "upstream_failed"
            )
            self._settle(node, status)
            return
        node.status = "queued"
        self.ready.append(node)

    def _outputs_of(self, node: Node) -> list[Any]:
        if node.outputs is None and node.output_ref:
            run_id, node_uuid = node.output_ref.split("/", 1)
            node.outputs = self.store.load_outputs(int(run_id), node_uuid)
        return node.outputs if node.outputs is not None else []

    @staticmethod
    def _digests(node: Node) -> list[Any]:
        """Content digests of the node's inputs (what its cache key depends on)."""
        digests: list[Any] = []
        for inp in node.inputs:
            if inp.kind == "external":
                digests.append(inp.digest)
            elif inp.kind == "whole":
                digests.append(inp.nodes[0].digest)
            elif inp.kind == "item":
                digests.append(f"{inp.nodes[0].digest}[{inp.index}]")
            else:  # gather
                digests.append([d.digest for d in inp.nodes])
        return digests

    def _args(self, node: Node) -> list[Any]:
        """The node's positional arguments: one per upstream block."""
        return [self._arg(inp) for inp in node.inputs]

    def _arg(self, inp: Input) -> Any:
        if inp.kind == "external":
            return inp.value
        if inp.kind == "whole":
            return _as_argument(self._outputs_of(inp.nodes[0]))
        if inp.kind == "item":
            dep = inp.nodes[0]
            if dep.items is None:
                dep.items, _meta = parse_dynamic_output(self._outputs_of(dep))
            return dep.items[inp.index]
        return [_as_argument(self._outputs_of(d)) for d in inp.nodes]  # gather

    def _input_refs(self, node: Node) -> list[Any]:
        """The node's arguments as store references, for executors that load them
        where the block runs (Dask): no upstream output passes through here."""
        def ref(dep: Node) -> InputRef:
            if dep.output_ref:
                return InputRef("whole", ref=dep.output_ref)
            return InputRef("value", value=_as_argument(self._outputs_of(dep)))

        refs: list[Any] = []
        for inp in node.inputs:
            if inp.kind == "external":
                refs.append(InputRef("value", value=inp.value))
            elif inp.kind == "whole":
                refs.append(ref(inp.nodes[0]))
            elif inp.kind == "item" and inp.nodes[0].output_ref:
                refs.append(InputRef("item", ref=inp.nodes[0].output_ref, index=inp.index))
            elif inp.kind == "gather" and all(d.output_ref for d in inp.nodes):
                refs.append(InputRef("gather", refs=tuple(d.output_ref for d in inp.nodes)))
            else:  # outputs only held in memory: pass the value
                refs.append(InputRef("value", value=self._arg(inp)))
        return refs

    def _start(self, node: Node) -> None:
        pb = node.block
        node.started = time.perf_counter()
        if pb.type == "global_data_product":
            self._start_gdp(node)
            return
        source, code_hash, file_path = self._sources[pb.uuid]
        prior = self._done_before.get(node.uuid) if self._done_before and not node.path else None
        if prior is not None and self._ref_exists(prior["output_ref"]):
            # Completed before this (resumed) run was interrupted: never executed again,
            # whether or not the block is cached.
            self._reuse(node, prior["output_ref"], prior.get("digest"), prior.get("cache_key"))
            return
        key = None
        if pb.type != "sensor":  # a sensor always polls: never cached, never reused
            key = self._key(node, code_hash, file_path)
            caching = self._caching(pb)
            hit = None
            if caching or self.recover_runs:
                hit = self.session.db.lookup_cache(
                    key, run_ids=None if caching else self.recover_runs
                )
            if hit and hit.get("output_ref") and self._ref_exists(hit["output_ref"]):
                self._reuse(node, hit["output_ref"], hit.get("digest"), key)
                return
        node.cache_key = key
        try:  # only now load the inputs: a cache hit never reads them
            by_ref = getattr(self.executor, "inputs_by_reference", False)
            args = self._input_refs(node) if by_ref else self._args(node)
        except Exception as exc:
            self._complete(node, exc)
            return
        self._release_inputs(node)
        kwargs = dict(self._base_kwargs)
        kwargs["block_uuid"] = pb.uuid
        kwargs["dynamic_block_uuid"] = node.uuid if node.path else None
        kwargs["dynamic_block_index"] = node.dynamic_index
        kwargs["configuration"] = pb.spec.configuration or {}
        task = BlockTask(
            run_id=self.run_id,
            node_uuid=node.uuid,
            block_uuid=pb.uuid,
            block_type=pb.type,
            file_path=file_path,
            inputs=args,
            kwargs=kwargs,
            log_path=self.log_dir / (quote(node.uuid, safe="") + ".log"),
            retry_config=pb.spec.retry_config or getattr(self.spec, "retry_config", None) or None,
            timeout=pb.spec.timeout,
            run_tests=self.run_tests,
            condition_files=self.condition_files.get(pb.uuid, []),
            callback_files=self.callback_files.get(pb.uuid, []),
            store=self.store,
            import_paths=self._import_paths,
            context=self._context(pb.uuid),
            progress=self._progress_sink(node) if self.on_event is not None else None,
            source=source,
            code_hash=code_hash,
        )
        node.status = "running"
        self.rec.update_block_run(
            self.run_id, node.uuid, status="running", started_at=datetime.now(timezone.utc)
        )
        self._emit(type="block", node=node.uuid, block=pb.uuid, status="running")
        self.running += 1
        if pb.type == "sensor":
            self._start_sensor(node, task)
            return
        fut = self.executor.submit(task)
        fut.add_done_callback(lambda f, n=node: self._done_q.put((n, _result(f))))

    def _reuse(self, node: Node, ref: str, digest: Any, key: str | None) -> None:
        """Complete `node` with stored outputs (a cache hit, or its own earlier completion)."""
        node.cache_hit = True
        node.output_ref = ref
        node.digest = digest
        now = datetime.now(timezone.utc)
        fields = dict(
            status="completed", cache_hit=True, output_ref=ref, digest=digest,
            started_at=now, completed_at=now, attempts=0,
        )
        if key:
            fields["cache_key"] = key
        self.rec.update_block_run(self.run_id, node.uuid, **fields)
        self._unflushed = True
        self._release_inputs(node)
        self._completed(node)

    def _key(self, node: Node, code_hash: str, file_path: Path) -> str:
        """The node's cache key under its block's policy (see engine/cache.py). Recorded
        on every completed block run, so a later cached or resumed run can find it. The
        parts shared by all nodes of a block are hashed once per run."""
        pb = node.block
        static = self._policies.get(pb.uuid)
        if static is None:
            attached = self.condition_files.get(pb.uuid, []) + self.callback_files.get(pb.uuid, [])
            roots = [self._ws_root.parent, self._ws_root]
            policy = cache_mod.policy_from((pb.spec.configuration or {}).get("cache_policy"))
            parts = cache_mod.KeyParts(
                block_type=pb.type,
                code_hash=code_hash,
                attached_hashes=[cache_mod.file_digest(p) for p in attached],
                imports_hash=",".join(
                    [cache_mod.imports_hash(p, roots, self._ws_root) for p in [file_path, *attached]]
                ),
                configuration=pb.spec.configuration,
                variables=self.variables,
                execution_date=self.execution_date,
            )
            static = self._policies[pb.uuid] = (policy, policy.block_hasher(parts), parts)
        policy, hasher, parts = static
        parts.input_digests = self._digests(node)
        parts.dynamic_index = node.dynamic_index
        return policy.node_key(hasher, parts)

    def _start_sensor(self, node: Node, task: BlockTask) -> None:
        cfg = node.block.spec.configuration or {}
        task.poke_interval = poke_interval(cfg, self.run_settings, {})
        task.cancel = self._cancel
        task.on_poll = lambda polls, n=node: self._done_q.put((n, Poll(polls)))
        start_sensor(execute_block, task, lambda result, n=node: self._done_q.put((n, result)))

    def _sensor_waiting(self, node: Node, polls: int) -> None:
        interval = poke_interval(node.block.spec.configuration or {}, self.run_settings, {})
        info = {"state": "waiting", "polls": polls, "poke_interval": interval}
        self.rec.update_block_run(self.run_id, node.uuid, metrics={"sensor": info})
        self._emit(type="sensor", node=node.uuid, block=node.block.uuid, **info)

    def _progress_sink(self, node: Node) -> Callable[[dict], None]:
        def sink(info: dict) -> None:
            self._emit(type="progress", node=node.uuid, block=node.block.uuid, **info)

        return sink

    def _context(self, block_uuid: str) -> BlockContext:
        return BlockContext(
            workspace_root=str(self.session.workspace.root),
            project=self.project,
            pipeline=self.spec.uuid,
            block=block_uuid,
            run_id=self.run_id,
        )

    def _release_inputs(self, node: Node) -> None:
        """Drop live upstream outputs nobody else will read: peak memory stays near what
        a plain script holds. They stay in the store (a late reader reloads them)."""
        seen = set()
        for inp in node.inputs:
            for dep in inp.nodes:
                if id(dep) in seen:
                    continue
                seen.add(id(dep))
                dep.pending -= 1
                self._maybe_release(dep)

    def _maybe_release(self, node: Node) -> None:
        if node.pending <= 0 and node.output_ref and node.status in GOOD and not node.block.dynamic:
            node.outputs = None

    def _ref_exists(self, ref: str) -> bool:
        """A cache hit counts only if its outputs are still stored and readable
        (retention may have removed them; a codec may no longer exist)."""
        from blockyard.store import get_codec

        from blockyard.errors import StoreError

        run_id, node_uuid = ref.split("/", 1)
        manifest = self.store.manifest(int(run_id), node_uuid)
        if manifest is None or not all(get_codec(o["codec"]) is not None for o in manifest.outputs):
            return False
        try:  # a cached output whose bytes changed is recomputed, never served
            self.store.verify_outputs(int(run_id), node_uuid)
        except StoreError as exc:
            import logging

            logging.getLogger("blockyard.engine").warning("cache entry not used: %s", exc)
            return False
        return True

    def _start_gdp(self, node: Node) -> None:
        from blockyard.engine.gdp import resolve_global_data_product

        node.status = "running"
        self.rec.update_block_run(
            self.run_id, node.uuid, status="running", started_at=datetime.now(timezone.utc)
        )
        self._emit(type="block", node=node.uuid, block=node.block.uuid, status="running")
        self.running += 1

        def work() -> None:
            try:
                result = resolve_global_data_product(self, node)
            except BaseException as exc:  # noqa: BLE001
                result = exc
            self._done_q.put((node, result))

        threading.Thread(target=work, name=f"gdp-{node.uuid}", daemon=True).start()

    # -------------------------------------------------------- completion
    def _complete(self, node: Node, result: "Outcome | BaseException") -> None:
        if isinstance(result, BaseException):
            outcome = Outcome(node_uuid=node.uuid, status="failed")
            outcome.error = (
                str(result) if isinstance(result, BlockyardError)
                else f"block '{node.uuid}': {type(result).__name__}: {result}"
            )
            outcome.error_details = (
                result.to_dict() if isinstance(result, BlockyardError) else {"block": node.uuid}
            )
            import traceback

            outcome.traceback = "".join(traceback.format_exception(result))
            outcome.started_at = outcome.completed_at = datetime.now(timezone.utc)
        else:
            outcome = result
        if masking.active() and outcome.status != "completed":  # errors show *** for secrets
            outcome.error = masking.mask(outcome.error)
            outcome.traceback = masking.mask(outcome.traceback)
            outcome.error_details = masking.mask_data(outcome.error_details)
        node.outcome = outcome
        if outcome.status == "completed":
            # The node holds the live outputs from here on (and drops them once its last
            # reader started); the outcome must not keep a second reference to them.
            node.outputs, outcome.outputs = outcome.outputs, None
            node.output_ref = outcome.output_ref
            node.digest = outcome.digest
        fields: dict[str, Any] = {
            "status": outcome.status,
            "attempts": outcome.attempts,
            "completed_at": outcome.completed_at,
            "error": outcome.error,
            "traceback": outcome.traceback,
            "output_ref": outcome.output_ref,
            "digest": outcome.digest,
            "tests": [t.to_dict() for t in outcome.tests] or None,
            "metrics": self._metrics(node, outcome),
            "log_path": outcome.log_path,
        }
        if outcome.status == "completed" and node.cache_key:
            fields["cache_key"] = node.cache_key
        if outcome.started_at:
            fields["started_at"] = outcome.started_at
        self.rec.update_block_run(self.run_id, node.uuid, **fields)
        if outcome.status == "completed":
            self._unflushed = True
        if outcome.status == "failed" and self.error is None:
            self.error = outcome.error
            self.error_details = outcome.error_details
        if outcome.status == "completed":
            self._completed(node)
        else:
            self._after(node, outcome.status)

    @staticmethod
    def _metrics(node: Node, outcome: Outcome) -> dict:
        metrics: dict[str, Any] = {"duration": outcome.duration}
        if node.block.type == "sensor":
            state = {"completed": "met", "cancelled": "cancelled"}.get(outcome.status, "failed")
            metrics["sensor"] = {"state": state, "polls": outcome.attempts}
        return metrics

    def _completed(self, node: Node) -> None:
        """A node finished well (ran, or hit the cache): expand it if it is dynamic."""
        if not node.block.dynamic:
            self._after(node, "completed")
            self._maybe_release(node)
            return
        try:
            self._expand(node)
        except Exception as exc:
            msg = f"block '{node.uuid}': {exc}"
            self.rec.update_block_run(self.run_id, node.uuid, status="failed", error=msg)
            if self.error is None:
                self.error, self.error_details = msg, {"block": node.uuid}
            self._after(node, "failed")
            return
        self._after(node, "completed")
        self._create_nodes()

    def _expand(self, node: Node) -> None:
        items, meta = parse_dynamic_output(self._outputs_of(node))
        node.items = items
        self.expansions[(node.block.uuid, node.path)] = _Expansion(len(items), clone_labels(meta))

    def _settle(self, node: Node, status: str) -> None:
        """Finish a node without running it (upstream failed, skipped, cancelled)."""
        self.rec.update_block_run(self.run_id, node.uuid, status=status)
        self._after(node, status)

    def _after(self, node: Node, status: str) -> None:
        node.status = status
        duration = time.perf_counter() - node.started if node.started else None
        self._emit(
            type="block",
            node=node.uuid,
            block=node.block.uuid,
            status=status,
            duration=duration,
            cache_hit=node.cache_hit,
            error=node.outcome.error if node.outcome else None,
            tests=[t.to_dict() for t in node.outcome.tests] if node.outcome else [],
        )
        for dep in node.dependents:
            if status not in GOOD or status == "condition_failed":
                dep.bad_upstream = dep.bad_upstream or status
            dep.waiting -= 1
            if dep.waiting == 0:
                self._make_ready(dep)

    # ------------------------------------------------------------- finish
    def _finish(self) -> "RunState":
        # Guard: a run is never reported completed with blocks that did not run.
        stuck = [n for n in self.by_uuid.values() if n.status in ("initial", "queued", "running")]
        missing = [u for u, pb in self.selected.items() if not pb.lineage and (u, ()) not in self.nodes]
        if (stuck or missing) and not self._cancel.is_set():
            names = [n.uuid for n in stuck] + missing
            msg = f"blocks never ran: {', '.join(names[:10])}" + (" ..." if len(names) > 10 else "")
            for n in stuck:
                n.status = "failed"
                self.rec.update_block_run(self.run_id, n.uuid, status="failed", error=msg)
            for u in missing:
                self.rec.update_block_run(self.run_id, u, status="failed", error=msg)
            if self.error is None:
                self.error, self.error_details = msg, {"message": msg}
        statuses = [n.status for n in self.by_uuid.values()] + ["failed" for _ in missing]
        # Blocks whose clones were never created (their fan-out failed or was empty).
        for uuid, pb in self.selected.items():
            if pb.lineage:
                clones = [n for (b, _), n in self.nodes.items() if b == uuid]
                if clones:
                    agg = _aggregate([c.status for c in clones])
                elif any(s not in GOOD for s in statuses):
                    agg = "cancelled" if self._cancel.is_set() else "upstream_failed"
                else:
                    agg = "completed"
                self.rec.update_block_run(self.run_id, uuid, status=agg)
        if self._cancel.is_set():
            status = "cancelled"
        elif all(s in GOOD for s in statuses):
            status = "completed"
        else:
            status = "failed"
        self.rec.close()
        self.session.db.finish_pipeline_run(
            self.run_id, status, error=self.error, error_details=self.error_details
        )
        self._emit(type="run_finished", run_id=self.run_id, status=status, error=self.error)
        return RunState(self, status)


def _aggregate(statuses: list[str]) -> str:
    for s in ("failed", "upstream_failed", "cancelled"):
        if s in statuses:
            return s
    return "completed"


def _as_argument(outputs: list[Any]) -> Any:
    """One upstream = one argument: its single output, or the list of its outputs."""
    return outputs[0] if len(outputs) == 1 else list(outputs)


def _result(fut) -> "Outcome | BaseException":
    exc = fut.exception()
    return exc if exc is not None else fut.result()


class RunState:
    """What a finished run hands back to the API layer."""

    def __init__(self, runner: PipelineRunner, status: str) -> None:
        self.runner = runner
        self.status = status
