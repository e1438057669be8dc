"""What is running right now, for library code called from inside a block.

The engine sets `current` while a block runs (on the worker thread, or in the
worker process), so Mage-style helpers called from block code — secrets,
`get_variable`, `set_global_variable`, `trigger_pipeline` — find the block's
workspace, project and database without relying on the environment or cwd.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class BlockContext:
    workspace_root: str
    project: str
    pipeline: str
    block: str
    run_id: int


current: contextvars.ContextVar[BlockContext | None] = contextvars.ContextVar(
    "blockyard_current_block", default=None
)


def get() -> BlockContext | None:
    return current.get()
