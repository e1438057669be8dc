"""Typed run events: what a run reports as it goes, to whoever subscribed.

The run loop performs no side effect of its own beyond executing blocks: it emits
these events, in order, on its own thread. Subscribers are plain callables
`(event) -> None`: the run-history recorder (engine/history.py), the CLI live view and
the server's log stream (through `legacy_dict`, the dict shape they were written for),
the worker's lease guard (orchestration/worker.py). A subscriber that raises never
breaks the run, except the history recorder, whose failure is the run's failure.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple, Union

from blockyard.engine.state import Status

log = logging.getLogger("blockyard.engine")


# NamedTuples, not dataclasses: immutable, typed, and ~5x cheaper to define at import
# time (`blockyard run` start-up counts) and to create per block.
class RunStarted(NamedTuple):
    run_id: int
    blocks: list[str]


class NodeCreated(NamedTuple):
    """A dynamic block's clone came into being (static nodes exist from the start)."""

    run_id: int
    node: str
    block: str
    dynamic_index: int | None


class BlockStarted(NamedTuple):
    run_id: int
    node: str
    block: str
    # The nodes of this run whose outputs it reads: their completion is made durable
    # before it starts.
    upstream: tuple[str, ...] = ()


class BlockFinished(NamedTuple):
    """A node reached its final status: it ran (`outcome` set), its stored outputs were
    reused (`cache_hit`), or it was settled without running (upstream failed, ...)."""

    run_id: int
    node: str
    block: str
    status: Status
    duration: float | None = None
    cache_hit: bool = False
    error: str | None = None
    tests: list[dict] | tuple = ()
    outcome: Any = None  # engine.execute.Outcome when the block ran
    output_ref: str | None = None
    digest: str | None = None
    cache_key: str | None = None
    metrics: dict | None = None


class FanOutFinished(NamedTuple):
    """A block below a fan-out is done: `status` aggregates its clones' statuses."""

    run_id: int
    block: str
    status: Status


class SensorWaiting(NamedTuple):
    run_id: int
    node: str
    block: str
    polls: int
    poke_interval: float


class Progress(NamedTuple):
    run_id: int
    node: str
    block: str
    info: dict


class RunFinished(NamedTuple):
    run_id: int
    status: Status
    error: str | None = None
    error_details: dict | None = None


RunEvent = Union[
    RunStarted, NodeCreated, BlockStarted, BlockFinished, FanOutFinished, SensorWaiting,
    Progress, RunFinished,
]

Subscriber = Callable[[RunEvent], None]


class EventBus:
    """Delivers each event to every subscriber, in subscription order."""

    def __init__(self, subscribers: list[Subscriber] | None = None) -> None:
        self.subscribers: list[Subscriber] = list(subscribers or [])
        self.critical: set[int] = set()  # ids of subscribers whose failure must propagate

    def subscribe(self, fn: Subscriber, *, critical: bool = False, first: bool = False) -> None:
        self.subscribers.insert(0, fn) if first else self.subscribers.append(fn)
        if critical:
            self.critical.add(id(fn))

    def emit(self, event: RunEvent) -> None:
        for fn in self.subscribers:
            try:
                fn(event)
            except Exception:
                if id(fn) in self.critical:
                    raise
                # A broken progress view must not break the run.
                log.debug("event subscriber %r failed on %r", fn, event, exc_info=True)


def legacy_dict(event: RunEvent) -> dict | None:
    """The dict an `on_event` callback receives (CLI live view, server log stream)."""
    if isinstance(event, RunStarted):
        return {"type": "run_started", "run_id": event.run_id, "blocks": list(event.blocks)}
    if isinstance(event, BlockStarted):
        return {"type": "block", "node": event.node, "block": event.block, "status": "running"}
    if isinstance(event, BlockFinished):
        return {
            "type": "block", "node": event.node, "block": event.block,
            "status": str(event.status), "duration": event.duration,
            "cache_hit": event.cache_hit, "error": event.error, "tests": list(event.tests),
        }
    if isinstance(event, SensorWaiting):
        return {
            "type": "sensor", "node": event.node, "block": event.block, "state": "waiting",
            "polls": event.polls, "poke_interval": event.poke_interval,
        }
    if isinstance(event, Progress):
        return {"type": "progress", "node": event.node, "block": event.block, **event.info}
    if isinstance(event, RunFinished):
        return {
            "type": "run_finished", "run_id": event.run_id,
            "status": str(event.status), "error": event.error,
        }
    return None  # NodeCreated, FanOutFinished: no dict shape (clones report themselves)


def on_event_subscriber(on_event: Callable[[dict], None]) -> Subscriber:
    """Adapt a dict callback (`run_pipeline(on_event=...)`) to a subscriber."""

    def deliver(event: RunEvent) -> None:
        d = legacy_dict(event)
        if d is not None:
            on_event(d)

    deliver.on_event = on_event  # type: ignore[attr-defined]
    return deliver
