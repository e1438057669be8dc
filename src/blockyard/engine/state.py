"""The pure state of one run: nodes, their dependencies, readiness, statuses.

No I/O here (shaped like Dagster's ActiveExecution / Hamilton's ExecutionState): the
runner asks what is ready, reports what finished, and emits events for the nodes this
state settled on its own (upstream failed, condition failed, cancelled). A node is one
execution of a block: keyed by (block uuid, fan-out path), where the path holds one
index per dynamic ancestor (`()` for a block that is not fanned out).
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Block and run statuses; str-valued, so stored values stay the same strings."""

    INITIAL = "initial"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UPSTREAM_FAILED = "upstream_failed"
    CONDITION_FAILED = "condition_failed"

    @property
    def good(self) -> bool:
        """Finished without failing (a false condition skips, it does not fail)."""
        return self in (Status.COMPLETED, Status.CONDITION_FAILED)

    @property
    def pending(self) -> bool:
        return self in (Status.INITIAL, Status.QUEUED, Status.RUNNING)


class Input:
    """One positional argument of a node: an upstream node's outputs (`whole`), one
    item of a dynamic upstream's fan-out (`item`), a list over clones (`gather`), or
    a value stored by an earlier run (`external`, for --block / --from-block)."""

    __slots__ = ("kind", "nodes", "index", "value", "digest")

    def __init__(self, kind: str, nodes: list["Node"] | None = None, index: int | None = None,
                 value: Any = None, digest: Any = None) -> None:
        self.kind, self.nodes, self.index = kind, nodes or [], index
        self.value, self.digest = value, digest

    def __repr__(self) -> str:
        return f"Input({self.kind}, {[n.uuid for n in self.nodes]}, index={self.index})"


class Node:
    """One execution of a block in this run (plain slots class: thousands per run)."""

    __slots__ = (
        "uuid", "block", "path", "inputs", "dynamic_index", "status", "waiting",
        "bad_upstream", "dependents", "upstream", "output_ref", "digest", "cache_key",
        "cache_hit", "outcome", "started",
    )

    def __init__(self, uuid: str, block: Any, path: tuple[int, ...], inputs: list[Input],
                 dynamic_index: int | None = None) -> None:
        self.uuid = uuid  # the block uuid, or "<block>:<label>..." for a dynamic clone
        self.block = block  # engine.plan.PlannedBlock
        self.path = path
        self.inputs = inputs
        self.dynamic_index = dynamic_index
        self.status = Status.INITIAL
        self.waiting = 0  # upstream nodes not finished yet
        self.bad_upstream: Status | None = None
        self.dependents: list[Node] = []
        # Distinct upstream nodes of this run, in argument order (most nodes read one).
        ups = inputs[0].nodes if len(inputs) == 1 else [n for inp in inputs for n in inp.nodes]
        self.upstream: list[Node] = list(ups) if len(ups) < 2 else list({id(n): n for n in ups}.values())
        self.output_ref: str | None = None  # "<run_id>/<node uuid>" in the artifact store
        self.digest: str | None = None
        self.cache_key: str | None = None
        self.cache_hit = False
        self.outcome: Any = None  # engine.execute.Outcome once it ran
        self.started = 0.0

    def __repr__(self) -> str:
        return f"Node({self.uuid}, {self.status})"


_ONE_PATH: list[tuple[tuple[int, ...], tuple[str, ...]]] = [((), ())]  # never changed


class RunState:
    """Which nodes exist, which are ready, and what their statuses are."""

    def __init__(self, plan: dict, selected: dict, externals: dict[str, Input]) -> None:
        self.plan = plan  # every block of the pipeline (PlannedBlock by uuid, topological)
        self.selected = selected  # the blocks this run executes
        self.externals = externals  # upstream outputs of unselected blocks
        self.nodes: dict[tuple[str, tuple[int, ...]], Node] = {}
        self.by_uuid: dict[str, Node] = {}
        self.expansions: dict[tuple[str, tuple[int, ...]], list[str]] = {}  # clone labels
        self.ready: list[Node] = []
        self.settled: list[Node] = []  # finished without running, not yet reported
        self.cancelled = False

    # ---------------------------------------------------------- creation
    def create_nodes(self) -> list[Node]:
        """Create every node whose fan-out is known (at start, and after each
        expansion); returns the new nodes. New ready nodes go to `ready`."""
        created = []
        for pb in self.selected.values():
            for path, labels in self._paths(pb.lineage):
                if (pb.uuid, path) in self.nodes:
                    continue
                inputs = self._node_inputs(pb, path)
                if inputs is None:
                    continue
                uuid = pb.uuid + "".join(f":{lab}" for lab in labels) if labels else pb.uuid
                node = Node(uuid, pb, path, inputs, dynamic_index=path[-1] if path else None)
                self.nodes[(pb.uuid, path)] = node
                self.by_uuid[uuid] = node
                created.append(node)
                for dep in node.upstream:
                    if dep.status.pending:
                        node.waiting += 1
                        dep.dependents.append(node)
                    elif not dep.status.good or dep.status is Status.CONDITION_FAILED:
                        node.bad_upstream = node.bad_upstream or dep.status
                if node.waiting == 0:
                    self._make_ready(node)
        return created

    def expand(self, node: Node, labels: list[str]) -> None:
        """A dynamic node fanned out into len(labels) items."""
        self.expansions[(node.block.uuid, node.path)] = labels

    def _paths(self, lineage: tuple[str, ...]) -> list[tuple[tuple[int, ...], tuple[str, ...]]]:
        if not lineage:  # a block outside any fan-out: its one node
            return _ONE_PATH
        result: list[tuple[tuple[int, ...], tuple[str, ...]]] = [((), ())]
        for dyn in lineage:
            nxt = []
            for path, labels in result:
                for i, label in enumerate(self.expansions.get((dyn, path), ())):
                    nxt.append((path + (i,), labels + (label,)))
            result = nxt
        return result

    def _node_inputs(self, pb: Any, path: tuple[int, ...]) -> list[Input] | None:
        """The node's inputs, or None while an upstream node does not exist yet."""
        inputs: list[Input] = []
        for u in pb.upstream:
            if u not in self.selected:
                inputs.append(self.externals[u])
                continue
            up = self.plan[u]
            depth = len(up.lineage)
            if up.dynamic:
                parent = self.nodes.get((u, path[:depth]))
                if parent is None:
                    return None
                inputs.append(Input("item", [parent], index=path[depth]))
            elif up.reduce_output and depth:
                prefix = path[: depth - 1]
                labels = self.expansions.get((up.lineage[-1], prefix))
                clones = [self.nodes.get((u, prefix + (i,))) for i in range(len(labels or ()))]
                if labels is None or any(c is None for c in clones):
                    return None
                inputs.append(Input("gather", clones))  # type: ignore[arg-type]
            else:
                dep = self.nodes.get((u, path[:depth]))
                if dep is None:
                    return None
                inputs.append(Input("whole", [dep]))
        return inputs

    # --------------------------------------------------------- readiness
    def _make_ready(self, node: Node) -> None:
        if node.bad_upstream is not None or self.cancelled:
            bad = node.bad_upstream or Status.CANCELLED
            if bad not in (Status.CONDITION_FAILED, Status.CANCELLED):
                bad = Status.UPSTREAM_FAILED
            self.settled.append(node)
            self.finish(node, bad)
            return
        node.status = Status.QUEUED
        self.ready.append(node)

    def next_ready(self) -> Node | None:
        return self.ready.pop() if self.ready and not self.cancelled else None

    def start(self, node: Node) -> None:
        node.status = Status.RUNNING

    def finish(self, node: Node, status: Status) -> None:
        """`node` reached `status`: its dependents may become ready (or be settled)."""
        node.status = Status(status)
        for dep in node.dependents:
            if not node.status.good or node.status is Status.CONDITION_FAILED:
                dep.bad_upstream = dep.bad_upstream or node.status
            dep.waiting -= 1
            if dep.waiting == 0:
                self._make_ready(dep)

    def take_settled(self) -> list[Node]:
        settled, self.settled = self.settled, []
        return settled

    def cancel(self) -> None:
        """Nothing new starts: queued nodes are settled as cancelled (running ones
        finish; what waits on them is settled as they do, or by `cancel_rest`)."""
        self.cancelled = True
        ready, self.ready = self.ready, []
        for node in ready:
            self.settled.append(node)
            self.finish(node, Status.CANCELLED)

    def cancel_rest(self) -> None:
        """Once nothing runs any more: every node not started is cancelled."""
        for node in list(self.by_uuid.values()):
            if node.status in (Status.INITIAL, Status.QUEUED):
                self.settled.append(node)
                self.finish(node, Status.CANCELLED)

    def release(self) -> None:
        """The run is over: nodes drop their dependents, the one reference back among them,
        so a finished run's nodes are freed with its result, not at a full collection."""
        for node in self.nodes.values():
            node.dependents.clear()

    # ------------------------------------------------------------ result
    def never_ran(self) -> tuple[list[Node], list[str]]:
        """Nodes still pending and selected blocks without a node, once nothing runs."""
        stuck = [n for n in self.by_uuid.values() if n.status.pending]
        missing = [u for u, pb in self.selected.items() if not pb.lineage and (u, ()) not in self.nodes]
        return stuck, missing

    def fanned_out_statuses(self) -> dict[str, Status]:
        """Per block below a fan-out: the aggregate status of its clones (the block's
        own row), or what became of it when no clone was ever created."""
        statuses = [n.status for n in self.by_uuid.values()]
        out: dict[str, Status] = {}
        for uuid, pb in self.selected.items():
            if not pb.lineage:
                continue
            clones = [n.status for (b, _), n in self.nodes.items() if b == uuid]
            if clones:
                out[uuid] = aggregate(clones)
            elif any(not s.good for s in statuses):
                out[uuid] = Status.CANCELLED if self.cancelled else Status.UPSTREAM_FAILED
            else:
                out[uuid] = Status.COMPLETED
        return out

    def run_status(self, missing: int = 0) -> Status:
        if self.cancelled:
            return Status.CANCELLED
        if missing or not all(n.status.good for n in self.by_uuid.values()):
            return Status.FAILED
        return Status.COMPLETED


def aggregate(statuses: list[Status]) -> Status:
    for s in (Status.FAILED, Status.UPSTREAM_FAILED, Status.CANCELLED):
        if s in statuses:
            return s
    return Status.COMPLETED
