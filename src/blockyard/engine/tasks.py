"""What a node becomes when it runs: the BlockTask an executor receives."""
from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from blockyard.engine import events as ev
from blockyard.engine.execute import BlockTask
from blockyard.engine.state import Node
from blockyard.runtime import BlockContext


def base_kwargs(runner: Any) -> dict[str, Any]:
    """The `**kwargs` every block of the run receives (Mage's names)."""
    return {
        **runner.variables,
        "execution_date": runner.execution_date,
        "ds": runner.execution_date.strftime("%Y-%m-%d"),
        "env": os.environ.get("BLOCKYARD_ENV", "dev"),
        "pipeline_uuid": runner.spec.uuid,
        "project_uuid": runner.project,
        "pipeline_run_id": runner.run_id,
        "context": {},
    }


class TaskFactory:
    """Builds each node's BlockTask; what is the same for every block of the run is
    worked out once here (a chain of 1,000 blocks builds 1,000 tasks)."""

    def __init__(self, runner: Any) -> None:
        session = runner.session
        ws_root = session.workspace.root
        # What a task needs of the runner, not the runner: no cycle runner <-> factory, so
        # a finished run's objects are freed with its result, not at a full collection.
        self.setup, self.events, self.emit = runner.setup, runner.events, runner.emit
        self.run_id, self.run_tests = runner.run_id, runner.run_tests
        self.project, self.pipeline = runner.project, runner.spec.uuid
        self.base_kwargs = base_kwargs(runner)
        self.log_dir = str(session.logs_dir / str(runner.run_id))
        self.import_paths = [str(ws_root.parent), str(ws_root)]
        self.ws_root = str(ws_root)
        self.prelude = tuple(getattr(session, "prelude", ()) or ())
        self.store = session.store
        self.pipeline_retry = getattr(runner.spec, "retry_config", None) or None

    def task(self, node: Node, args: list[Any]) -> BlockTask:
        pb, setup, run_id = node.block, self.setup, self.run_id
        source, code_hash, file_path = setup.sources[pb.uuid]
        kwargs = dict(self.base_kwargs)
        kwargs["block_uuid"] = pb.uuid
        kwargs["dynamic_block_uuid"] = node.uuid if node.path else None
        kwargs["dynamic_block_index"] = node.dynamic_index
        kwargs["configuration"] = pb.spec.configuration or {}
        progress = None
        if len(self.events.subscribers) > 1:  # someone besides the history listens
            emit = self.emit

            def progress(info: dict, n: Node = node) -> None:  # runtime.report_progress
                emit(ev.Progress(run_id, n.uuid, n.block.uuid, info))

        return BlockTask(
            run_id=run_id,
            node_uuid=node.uuid,
            block_uuid=pb.uuid,
            block_type=pb.type,
            file_path=file_path,
            inputs=args,
            kwargs=kwargs,
            log_path=f"{self.log_dir}/{quote(node.uuid, safe='')}.log",
            retry_config=pb.spec.retry_config or self.pipeline_retry,
            timeout=pb.spec.timeout,
            run_tests=self.run_tests,
            condition_files=setup.condition_files.get(pb.uuid, []),
            callback_files=setup.callback_files.get(pb.uuid, []),
            store=self.store,
            import_paths=self.import_paths,
            context=BlockContext(
                workspace_root=self.ws_root, project=self.project, pipeline=self.pipeline,
                block=pb.uuid, run_id=run_id,
            ),
            progress=progress,
            source=source,
            code_hash=code_hash,
            prelude=self.prelude,
        )
