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


# Where a block's progress reports go (the runner's live events); None outside a run
# or in a worker process.
progress_sink: contextvars.ContextVar = contextvars.ContextVar("blockyard_progress", default=None)


def report_progress(done: int, total: int | None = None, message: str | None = None) -> None:
    """Let a long block show how far it is (the CLI's live view, the UI).

    Call it from block code or library code a block calls (tuning does per trial);
    outside a run it does nothing."""
    sink = progress_sink.get()
    if sink is not None:
        try:
            sink({"done": done, "total": total, "message": message})
        except Exception:  # progress display must never break the block
            pass
