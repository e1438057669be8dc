"""Live block outputs of one run, with reference-counted release.

Like Kedro's DataCatalog (load / save / release): a node's outputs stay in memory
while a reader that has not started yet needs them, and are dropped as soon as the
last one started, so peak memory stays near what a plain script holds. They stay in
the artifact store: a late reader (a dynamic clone created later, `RunResult.outputs`)
loads them back. Statuses and references live on the nodes (engine/state.py); only
the objects live here.
"""
from __future__ import annotations

from typing import Any

from blockyard.engine.executors import InputRef
from blockyard.engine.plan import parse_dynamic_output
from blockyard.engine.state import Input, Node


def as_argument(outputs: list[Any]) -> Any:
    """One upstream = one argument: its single output, or the list of its outputs."""
    return outputs[0] if len(outputs) == 1 else list(outputs)


class LiveOutputs:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._live: dict[Node, list[Any]] = {}
        self._items: dict[Node, list[Any]] = {}  # parsed fan-out of dynamic nodes
        self._readers: dict[Node, int] = {}  # readers that have not started yet

    def track(self, node: Node) -> None:
        """A new node will read its upstream nodes' outputs once."""
        for dep in node.upstream:
            self._readers[dep] = self._readers.get(dep, 0) + 1

    def save(self, node: Node, outputs: list[Any] | None) -> None:
        if outputs is not None:
            self._live[node] = outputs
        self._maybe_release(node)

    def load(self, node: Node) -> list[Any]:
        outputs = self._live.get(node)
        if outputs is None and node.output_ref:
            run_id, node_uuid = node.output_ref.split("/", 1)
            outputs = self._live[node] = self.store.load_outputs(int(run_id), node_uuid)
        return outputs if outputs is not None else []

    def items(self, node: Node) -> tuple[list[Any], list[dict]]:
        """A dynamic node's fan-out items (parsed once) and their metadata."""
        items, meta = parse_dynamic_output(self.load(node))
        self._items[node] = items
        return items, meta

    def release_inputs(self, node: Node) -> None:
        """`node` read its inputs (it started, or was reused without reading them)."""
        for dep in node.upstream:
            self._readers[dep] = self._readers.get(dep, 0) - 1
            self._maybe_release(dep)

    def _maybe_release(self, node: Node) -> None:
        if (
            self._readers.get(node, 0) <= 0
            and node.output_ref
            and node.status.good
            and not node.block.dynamic
        ):
            self._live.pop(node, None)

    def held(self, node: Node) -> bool:
        return node in self._live

    # ------------------------------------------------------------ arguments
    def args(self, node: Node) -> list[Any]:
        """The node's positional arguments: one per upstream block."""
        return [self._arg(inp) for inp in node.inputs]

    def _arg(self, inp: Input) -> Any:
        if inp.kind == "external":
            return inp.value
        if inp.kind == "whole":
            return as_argument(self.load(inp.nodes[0]))
        if inp.kind == "item":
            dep = inp.nodes[0]
            items = self._items.get(dep)
            if items is None:
                items, _meta = self.items(dep)
            return items[inp.index]
        return [as_argument(self.load(d)) for d in inp.nodes]  # gather

    def refs(self, node: Node) -> list[Any]:
        """The arguments as store references, for executors that load them where the
        block runs (Dask): no upstream output passes through this process."""
        refs: list[Any] = []
        for inp in node.inputs:
            deps = inp.nodes
            if inp.kind == "external":
                refs.append(InputRef("value", value=inp.value))
            elif inp.kind == "whole" and deps[0].output_ref:
                refs.append(InputRef("whole", ref=deps[0].output_ref))
            elif inp.kind == "item" and deps[0].output_ref:
                refs.append(InputRef("item", ref=deps[0].output_ref, index=inp.index))
            elif inp.kind == "gather" and all(d.output_ref for d in deps):
                refs.append(InputRef("gather", refs=tuple(d.output_ref for d in deps)))
            else:  # outputs only held in memory: pass the value
                refs.append(InputRef("value", value=self._arg(inp)))
        return refs

    @staticmethod
    def digests(node: Node) -> list[Any]:
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
