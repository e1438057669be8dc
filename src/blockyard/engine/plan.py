"""The static shape of a pipeline run: blocks, edges, order, fan-out lineage.

A block's *lineage* is the chain of dynamic blocks whose fan-out clones it:
downstream of a dynamic block a block is cloned once per item; downstream of
a clone it is cloned too; a `reduce_output` clone gathers one level back up.
A run node is then (block, path) where path holds one item index per level.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from blockyard.errors import ProjectError
from blockyard.project.validate import find_cycle

# Block types that are part of the file layout but never run in a pipeline run.
NOT_RUN = {"markdown", "scratchpad", "chart", "callback", "conditional", "extension"}


def spec_value(spec: Any, key: str) -> Any:
    """A top-level value of a pipeline's or block's metadata: through `raw_value` when the
    spec has it (a spec from a cached parse then makes no copy of its file), else `raw`."""
    get = getattr(spec, "raw_value", None)
    if get is not None:
        return get(key)
    raw = getattr(spec, "raw", None)
    return raw.get(key) if isinstance(raw, dict) else None


@dataclass(slots=True)  # one per block a run: no instance dict (less for the GC to walk)
class PlannedBlock:
    uuid: str
    spec: Any  # project.BlockSpec
    # Tuples once planned: the collector stops tracking a tuple of strings, so the run's
    # thousands of them are not walked by every full collection, as lists would be.
    upstream: tuple[str, ...]
    downstream: tuple[str, ...] = ()
    lineage: tuple[str, ...] = ()
    order: int = 0
    # Read from the spec once: the run asks each a dozen times a block (a spec property
    # each, looking in its configuration). A plan lives for one run; the spec does not
    # change under it.
    dynamic: bool = field(init=False)
    reduce_output: bool = field(init=False)
    type: str = field(init=False)

    def __post_init__(self) -> None:
        self.dynamic = bool(self.spec.dynamic)
        self.reduce_output = bool(self.spec.reduce_output)
        self.type = self.spec.type


def plan_pipeline(spec: Any) -> dict[str, PlannedBlock]:
    """Blocks that run, in topological order (ties keep file order)."""
    file = getattr(spec, "path", None)
    runnable = [b for b in spec.blocks if b.type not in NOT_RUN]
    blocks: dict[str, PlannedBlock] = {}
    for b in runnable:
        blocks[b.uuid] = PlannedBlock(uuid=b.uuid, spec=b, upstream=tuple(b.upstream_blocks or ()))
    all_uuids = {b.uuid for b in spec.blocks}
    downstream: dict[str, list[str]] = {}
    for pb in blocks.values():
        kept = []
        for u in pb.upstream:
            if u in blocks:
                kept.append(u)
            elif u not in all_uuids:
                raise ProjectError(
                    f"upstream block '{u}' is not defined in this pipeline",
                    file=file,
                    block=pb.uuid,
                    pipeline=spec.uuid,
                    hint="fix upstream_blocks or add the block",
                )
        if len(kept) != len(pb.upstream):
            pb.upstream = tuple(kept)
        for u in kept:
            downstream.setdefault(u, []).append(pb.uuid)
    for u, down in downstream.items():
        blocks[u].downstream = tuple(down)
    order = _toposort(blocks, file, spec.uuid)
    ordered: dict[str, PlannedBlock] = {}
    for i, uuid in enumerate(order):
        pb = blocks[uuid]
        pb.order = i
        pb.lineage = _lineage(pb, ordered, file, spec.uuid)
        ordered[uuid] = pb
    return ordered


def _toposort(blocks: dict[str, PlannedBlock], file: Any, pipeline: str) -> list[str]:
    position = {u: i for i, u in enumerate(blocks)}
    indegree = {u: len(b.upstream) for u, b in blocks.items()}
    import heapq

    heap = [(position[u], u) for u, d in indegree.items() if d == 0]
    heapq.heapify(heap)
    out: list[str] = []
    while heap:
        _, u = heapq.heappop(heap)
        out.append(u)
        for d in blocks[u].downstream:
            indegree[d] -= 1
            if indegree[d] == 0:
                heapq.heappush(heap, (position[d], d))
    if len(out) != len(blocks):
        left = [u for u in blocks if u not in out]
        cycle = find_cycle(left, {u: blocks[u].upstream for u in left}) or []
        raise ProjectError(
            f"the pipeline has a cycle: {' -> '.join(cycle)}",
            file=file,
            block=cycle[0] if cycle else None,
            pipeline=pipeline,
            hint="remove one of these upstream links",
        )
    return out


def _lineage(
    pb: PlannedBlock, done: dict[str, PlannedBlock], file: Any, pipeline: str
) -> tuple[str, ...]:
    lineage: tuple[str, ...] = ()
    for u in pb.upstream:
        up = done[u]
        if up.dynamic:
            cand = up.lineage + (up.uuid,)
        elif up.reduce_output and up.lineage:
            cand = up.lineage[:-1]
        else:
            cand = up.lineage
        longer, shorter = (cand, lineage) if len(cand) >= len(lineage) else (lineage, cand)
        if longer[: len(shorter)] != shorter:
            raise ProjectError(
                "the block joins the outputs of two different dynamic fan-outs "
                f"({' > '.join(lineage) or 'none'} and {' > '.join(cand) or 'none'})",
                file=file,
                block=pb.uuid,
                pipeline=pipeline,
                hint="reduce one branch with reduce_output first",
            )
        lineage = longer
    return lineage


def parse_dynamic_output(outputs: list[Any]) -> tuple[list[Any], list[dict]]:
    """A dynamic block returns `(items, metadata)` (or `[items, metadata]`, or just items)."""
    if len(outputs) == 2 and _is_seq(outputs[0]) and _is_meta(outputs[1]):
        items, meta = list(outputs[0]), list(outputs[1])
    elif len(outputs) == 1:
        value = outputs[0]
        if (
            isinstance(value, list)
            and len(value) == 2
            and _is_seq(value[0])
            and _is_meta(value[1])
            and len(value[1]) == len(value[0])
        ):
            items, meta = list(value[0]), list(value[1])
        elif _is_seq(value):
            items, meta = list(value), []
        elif value is None:
            items, meta = [], []
        elif hasattr(value, "to_dict") and hasattr(value, "iterrows"):
            items, meta = value.to_dict("records"), []
        else:
            raise TypeError(
                "a dynamic block must return a list of items, or (items, metadata); "
                f"got {type(value).__name__}"
            )
    else:
        raise TypeError(
            f"a dynamic block must return a list of items, or (items, metadata); got {len(outputs)} outputs"
        )
    meta = [m if isinstance(m, dict) else {} for m in meta]
    meta += [{} for _ in range(len(items) - len(meta))]
    return items, meta[: len(items)]


def _is_seq(v: Any) -> bool:
    return isinstance(v, (list, tuple))


def _is_meta(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(m, dict) for m in v)


def clone_labels(meta: list[dict]) -> list[str]:
    labels, seen = [], set()
    for i, m in enumerate(meta):
        label = str(m.get("block_uuid", i)) if m else str(i)
        if label in seen:
            label = f"{label}_{i}"
        seen.add(label)
        labels.append(label)
    return labels
