"""The Python API: `blockyard.run_pipeline(...)`: opens the workspace's session (database,
store) and runs the engine on it. It lives above engine/, which never opens a database."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from blockyard.errors import BlockyardError


@dataclass
class BlockRunResult:
    uuid: str
    block_uuid: str
    status: str
    cache_hit: bool = False
    error: str | None = None
    traceback: str | None = None
    duration: float | None = None
    attempts: int = 0
    tests: list[dict] = field(default_factory=list)
    dynamic_index: int | None = None
    output_ref: str | None = None


class RunResult:
    """A finished pipeline run with its block runs; outputs load lazily from the store."""

    def __init__(self, runner: Any, status: str) -> None:
        self.run_id: int = runner.run_id
        self.status = str(status)  # a plain str (engine.state.Status is a StrEnum)
        self.pipeline_uuid = runner.spec.uuid
        self.project = runner.project
        self.error = runner.error
        self.error_details = runner.error_details
        self._runner = runner
        self._block_runs: dict[str, BlockRunResult] | None = None

    @property
    def block_runs(self) -> dict[str, BlockRunResult]:
        """One BlockRunResult per node, built on first use (most callers only look at
        `status`: a 1,000-block run would build and keep 1,000 of them for nothing)."""
        if self._block_runs is None:
            self._block_runs = {}
            for uuid, node in self._runner.by_uuid.items():
                oc = node.outcome
                self._block_runs[uuid] = BlockRunResult(
                    uuid=uuid,
                    block_uuid=node.block.uuid,
                    status=str(node.status),
                    cache_hit=node.cache_hit,
                    error=oc.error if oc else None,
                    traceback=oc.traceback if oc else None,
                    duration=oc.duration if oc else None,
                    attempts=oc.attempts if oc else 0,
                    tests=[t.to_dict() for t in oc.tests] if oc else [],
                    dynamic_index=node.dynamic_index,
                    output_ref=node.output_ref,
                )
        return self._block_runs

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def children(self, block_uuid: str) -> list[BlockRunResult]:
        """The dynamic clones of a block, in item order."""
        return sorted(
            (b for b in self.block_runs.values() if b.block_uuid == block_uuid and b.dynamic_index is not None),
            key=lambda b: (b.uuid.count(":"), b.dynamic_index),
        )

    def outputs(self, block_uuid: str) -> list[Any]:
        node = self._runner.by_uuid.get(block_uuid)
        if node is None:
            raise KeyError(f"no block run '{block_uuid}' in run {self.run_id}")
        return self._runner.outputs.load(node)

    def output(self, block_uuid: str, index: int | None = None) -> Any:
        outs = self.outputs(block_uuid)
        if index is not None:
            return outs[index]
        return outs[0] if len(outs) == 1 else list(outs)

    def __repr__(self) -> str:
        return f"<RunResult {self.project}/{self.pipeline_uuid} #{self.run_id} {self.status}>"


def run_pipeline(
    pipeline: str | Any,
    *,
    workspace: str | Path | Any | None = None,
    variables: dict | None = None,
    trigger_variables: dict | None = None,
    block: str | None = None,
    from_block: str | None = None,
    with_upstream: bool = False,
    use_cache: bool | None = None,
    executor: str | Any = None,  # None: the pipeline's executor_type, else "thread"
    max_workers: int | None = None,
    run_tests: bool = True,
    on_event: Callable[[dict], None] | None = None,
    execution_date: datetime | None = None,
    trigger_id: int | None = None,
    run_id: int | None = None,
    raise_on_failure: bool = False,
) -> RunResult:
    """Run a pipeline (or one block, or a block and its downstream) and return the run.

    With `block=B, with_upstream=True`, B runs together with every block it depends on
    (transitively), in topological order, and nothing else.

    Every block runs on every run, as in Mage. `use_cache=True` reuses the outputs of
    an earlier block run with the same cache key (engine/cache.py); None follows the
    pipeline's `cache:` and each block's `configuration.cache`; False never reuses.

    `pipeline` is `project/pipeline`, a bare pipeline uuid unique in the workspace,
    or a PipelineSpec. `run_id` executes a run already recorded (e.g. queued by the
    scheduler or the API) instead of creating one.
    """
    from blockyard.engine.runner import PipelineRunner
    from blockyard.session import session_for

    if isinstance(pipeline, str):
        ws = _workspace(workspace)
        try:
            spec = ws.find_pipeline(pipeline)
        except BlockyardError as exc:
            _record_unknown(ws, pipeline, exc, variables)
            raise
    else:
        spec = pipeline
        ws = spec.project.workspace if workspace is None else _workspace(workspace)
    session = session_for(ws)  # the runner validates the spec (and records a failed run)
    runner = PipelineRunner(
        session,
        spec,
        variables=variables,
        trigger_variables=trigger_variables,
        use_cache=use_cache,
        executor=executor,
        max_workers=max_workers,
        run_tests=run_tests,
        block=block,
        from_block=from_block,
        with_upstream=with_upstream,
        on_event=on_event,
        execution_date=execution_date,
        trigger_id=trigger_id,
        run_id=run_id,
    )
    state = runner.run()
    result = RunResult(runner, state.status)
    if raise_on_failure and not result.ok:
        raise BlockyardError(result.error or f"run {result.run_id} {result.status}")
    return result


def _workspace(workspace: Any) -> Any:
    from blockyard.project import Workspace

    if workspace is None:
        return Workspace.discover()
    if isinstance(workspace, (str, Path)):
        return Workspace.open(Path(workspace))
    return workspace


def _record_unknown(ws: Any, name: str, exc: BlockyardError, variables: dict | None) -> None:
    """An unknown pipeline is still a failed run in the history, with the message."""
    import os
    from datetime import timezone

    from blockyard.hosts import hostname
    from blockyard.session import session_for

    db = session_for(ws).db
    project, _, uuid = name.rpartition("/")
    run_id = db.create_pipeline_run(
        project=project,
        pipeline_uuid=uuid or name,
        variables=variables or {},
        execution_date=datetime.now(timezone.utc),
        block_uuids=[],
        status="running",
        pid=os.getpid(),
        hostname=hostname(),
    )
    db.finish_pipeline_run(run_id, "failed", error=str(exc), error_details=exc.to_dict())
