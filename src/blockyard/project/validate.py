"""Pipeline checks: unknown upstream blocks, duplicate uuids, cycles, missing block files."""
from __future__ import annotations

from typing import Iterable, Mapping

from blockyard.errors import ProjectError
from blockyard.project.protocols import PipelineLike


def derive_downstream(order: Iterable[str], upstream: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Downstream lists computed from upstream lists, in `order` (file order)."""
    order = list(order)
    downstream: dict[str, list[str]] = {uuid: [] for uuid in order}
    for uuid in order:
        for up in upstream.get(uuid, ()):
            if up in downstream and uuid not in downstream[up]:
                downstream[up].append(uuid)
    return downstream


def find_cycle(order: Iterable[str], upstream: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle as [a, b, c, a] (each feeds the next, starting with the one first in `order`),
    or None. Unknown uuids are ignored."""
    order = list(order)
    downstream = derive_downstream(order, upstream)
    position = {uuid: i for i, uuid in enumerate(order)}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in order:
        if state.get(start):
            continue
        path: list[str] = [start]
        iters = [iter(downstream[start])]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            s = state.get(nxt)
            if s == 1:
                cycle = path[path.index(nxt) :]
                # start at the block that comes first in the file, for a stable message
                first = min(range(len(cycle)), key=lambda i: position[cycle[i]])
                cycle = cycle[first:] + cycle[:first]
                return cycle + [cycle[0]]
            if s is None:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(downstream[nxt]))
    return None


def cycle_error(cycle: list[str], spec: "PipelineLike", *, line: int | None = None) -> ProjectError:
    return ProjectError(
        "blocks form a cycle: " + " -> ".join(cycle),
        file=spec.path,
        line=line,
        block=cycle[0],
        pipeline=spec.uuid,
        hint="remove one of these upstream links; a pipeline must be a DAG",
    )


def pipeline_problems(spec: "PipelineLike", *, check_files: bool = True) -> list[ProjectError]:
    """Every problem found in `spec` (empty list when the pipeline can run)."""
    problems: list[ProjectError] = []
    entries = list(spec.all_blocks())
    seen: dict[str, object] = {}
    for block in entries:
        if block.uuid in seen:
            problems.append(
                ProjectError(
                    f"duplicate block uuid {block.uuid!r} (in '{block.group}')",
                    file=spec.path,
                    line=block.line,
                    block=block.uuid,
                    pipeline=spec.uuid,
                    hint="block uuids must be unique within a pipeline",
                )
            )
        seen.setdefault(block.uuid, block)

    known = list(seen)
    known_hint = ""  # built once: a list of all blocks per problem would be O(n^2)
    for block in entries:
        for i, up in enumerate(block.upstream_blocks):
            if up not in seen:
                line = block.upstream_lines[i] if i < len(block.upstream_lines) else block.line
                known_hint = known_hint or "known blocks: " + (", ".join(known) or "none")
                problems.append(
                    ProjectError(
                        f"block '{block.uuid}' lists unknown upstream block '{up}'",
                        file=spec.path,
                        line=line,
                        block=block.uuid,
                        pipeline=spec.uuid,
                        hint=known_hint,
                    )
                )
            elif up == block.uuid:
                pass  # reported as a cycle below
        for key in ("callback_blocks", "conditional_blocks"):
            for ref in getattr(block, key):
                if ref not in seen:
                    problems.append(
                        ProjectError(
                            f"block '{block.uuid}' lists unknown {key[:-7]} block '{ref}' in '{key}'",
                            file=spec.path,
                            line=block.line,
                            block=block.uuid,
                            pipeline=spec.uuid,
                        )
                    )

    upstream = {b.uuid: b.upstream_blocks for b in reversed(entries)}  # first entry wins on duplicates
    cycle = find_cycle(known, upstream)
    if cycle is not None:
        first = seen[cycle[0]]
        problems.append(cycle_error(cycle, spec, line=getattr(first, "line", None)))

    if check_files:
        for block in entries:
            if not block.executable:
                continue
            path = block.file_path
            if path is not None and not path.is_file():
                source = block.file_source
                problems.append(
                    ProjectError(
                        f"file for block '{block.uuid}' not found: expected {path}",
                        file=spec.path,
                        line=block.line,
                        block=block.uuid,
                        pipeline=spec.uuid,
                        hint=(f"configuration.file_source.path is {source!r}; " if source else "")
                        + "create the file or fix the block's uuid/type",
                    )
                )
    return problems
