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


def block_task(runner: Any, node: Node, args: list[Any]) -> BlockTask:
    pb, setup, session = node.block, runner.setup, runner.session
    source, code_hash, file_path = setup.sources[pb.uuid]
    kwargs = dict(runner.base_kwargs)
    kwargs["block_uuid"] = pb.uuid
    kwargs["dynamic_block_uuid"] = node.uuid if node.path else None
    kwargs["dynamic_block_index"] = node.dynamic_index
    kwargs["configuration"] = pb.spec.configuration or {}
    ws_root = session.workspace.root
    progress = None
    if len(runner.events.subscribers) > 1:  # someone besides the history listens

        def progress(info: dict, n: Node = node) -> None:  # runtime.report_progress
            runner.emit(ev.Progress(runner.run_id, n.uuid, n.block.uuid, info))

    return BlockTask(
        run_id=runner.run_id,
        node_uuid=node.uuid,
        block_uuid=pb.uuid,
        block_type=pb.type,
        file_path=file_path,
        inputs=args,
        kwargs=kwargs,
        log_path=session.logs_dir / str(runner.run_id) / (quote(node.uuid, safe="") + ".log"),
        retry_config=pb.spec.retry_config or getattr(runner.spec, "retry_config", None) or None,
        timeout=pb.spec.timeout,
        run_tests=runner.run_tests,
        condition_files=setup.condition_files.get(pb.uuid, []),
        callback_files=setup.callback_files.get(pb.uuid, []),
        store=session.store,
        import_paths=[str(ws_root.parent), str(ws_root)],
        context=BlockContext(
            workspace_root=str(ws_root), project=runner.project, pipeline=runner.spec.uuid,
            block=pb.uuid, run_id=runner.run_id,
        ),
        progress=progress,
        source=source,
        code_hash=code_hash,
        prelude=tuple(getattr(session, "prelude", ()) or ()),
    )
