"""Everything a run decides before its first block starts, checked up front.

`prepare(...)` validates the pipeline, plans it, reads a queued run's row (its
settings and its earlier attempts), resolves the cache settings, selects the blocks,
reads and syntax-checks their files and loads stored upstream outputs for --block /
--from-block. Any bad input raises BlockyardError naming the file and block, before
anything runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blockyard import marshal_files
from blockyard.engine import cache as cache_mod
from blockyard.engine.loader import (
    compile_block,
    is_compiled,
    load_code_bundle,
    read_source,
    save_code_bundle,
)
from blockyard.engine.outputs import as_argument
from blockyard.engine.plan import PlannedBlock, plan_pipeline, spec_value
from blockyard.engine.sensors import poke_interval
from blockyard.engine.state import Input
from blockyard.errors import BlockLoadError, BlockyardError


@dataclass
class RunSetup:
    plan: dict[str, PlannedBlock]
    selected: dict[str, PlannedBlock]
    sources: dict[str, tuple[str, str, Path]]  # block -> (source, code hash, file)
    externals: dict[str, Input]
    settings: dict = field(default_factory=dict)  # the queued run's settings
    # Runs whose completed blocks this run reuses: itself when resumed, and the
    # runs it retries (recovery, not caching: never other runs).
    recover_runs: list[int] = field(default_factory=list)
    use_cache: bool | None = None
    pipeline_cache: bool = False
    callback_files: dict[str, list[Path]] = field(default_factory=dict)
    condition_files: dict[str, list[Path]] = field(default_factory=dict)

    def caching(self, pb: PlannedBlock) -> bool:
        """Caching is opt-in: the caller's `use_cache`, else the queued run's `cache`
        setting, else the pipeline's `cache: true`; a block's `configuration.cache`
        decides for that block. `use_cache=False` beats them all."""
        if self.use_cache is False:
            return False
        own = cache_mod.cache_setting(pb.spec.configuration)
        if own is not None:
            return own
        return bool(self.use_cache) or self.pipeline_cache


def read_run_row(db: Any, run_id: int | None) -> tuple[dict, list[int]]:
    """A queued run's settings, and its earlier attempts (itself when resumed, then
    the chain of runs it retries)."""
    if run_id is None:
        return {}, []
    try:
        row = db.get_pipeline_run(run_id) or {}
    except Exception:  # noqa: BLE001 - no settings then: the whole pipeline
        return {}, []
    settings = row.get("settings") or {}
    earlier = [int(run_id)] if row.get("resume_count") else []
    previous = row.get("retry_of")
    while previous is not None and len(earlier) < 50:
        earlier.append(int(previous))
        try:
            previous = (db.get_pipeline_run(int(previous)) or {}).get("retry_of")
        except Exception:  # noqa: BLE001
            break
    return (settings if isinstance(settings, dict) else {}), earlier


def prepare(runner: Any) -> RunSetup:
    spec = runner.spec
    # The block files are checked below, where they are read anyway (a stat each saved);
    # a missing one then gets validate()'s full report, as before.
    spec.validate(check_files=False)
    plan = plan_pipeline(spec)
    settings, recover = read_run_row(runner.session.db, runner.run_id)
    if not (runner.only_block or runner.from_block):
        block = settings.get("block")
        if isinstance(block, str) and block:  # `{"block": B, "with_upstream": true}`
            runner.only_block = block
            runner.with_upstream = bool(settings.get("with_upstream", runner.with_upstream))
    use_cache, pipeline_cache = _cache_settings(spec, plan, runner.use_cache, settings)
    selected = _select(spec, plan, runner.only_block, runner.from_block, runner.with_upstream)
    callbacks, conditions = _attached_files(spec)
    if any(not p.is_file() for files in (*callbacks.values(), *conditions.values()) for p in files):
        spec.validate()  # a missing callback or conditional file: the full report
    return RunSetup(
        plan=plan,
        selected=selected,
        sources=_read_sources_or_report(spec, selected, _bundle_path(runner)),
        externals=_external_inputs(runner, plan, selected),
        settings=settings,
        recover_runs=recover,
        use_cache=use_cache,
        pipeline_cache=pipeline_cache,
        callback_files=callbacks,
        condition_files=conditions,
    )


def _cache_settings(spec: Any, plan: dict, use_cache: bool | None, settings: dict) -> tuple:
    pipeline_cache = spec_value(spec, "cache")
    if pipeline_cache is not None and not isinstance(pipeline_cache, bool):
        raise BlockyardError(
            f"'cache' must be true or false, not {pipeline_cache!r}",
            file=spec.path,
            pipeline=spec.uuid,
        )
    if use_cache is None and isinstance(settings.get("cache"), bool):
        use_cache = settings["cache"]
    for uuid, pb in plan.items():
        cfg = pb.spec.configuration
        if not cfg and pb.type != "sensor":
            continue  # nothing to check (most blocks)
        cfg = cfg or {}
        where = {"file": spec.path, "block": uuid, "pipeline": spec.uuid}
        if "cache" in cfg and not isinstance(cfg["cache"], bool):
            raise BlockyardError(
                f"configuration.cache must be true or false, not {cfg['cache']!r}", **where
            )
        try:
            cache_mod.policy_from(cfg.get("cache_policy"))
        except ValueError as exc:
            raise BlockyardError(f"configuration.cache_policy: {exc}", **where) from None
        if pb.type == "sensor":
            poke_interval(cfg, settings, where)
    return use_cache, bool(pipeline_cache)


def _select(spec: Any, plan: dict, only: str | None, start: str | None, with_upstream: bool) -> dict:
    for name in (only, start):
        if name and name not in plan:
            raise BlockyardError(
                f"no block '{name}' in pipeline '{spec.uuid}'",
                file=spec.path,
                hint="blocks: " + ", ".join(plan),
            )
    if only and with_upstream:
        keep = {only}
        for uuid in reversed(list(plan)):  # reverse topological order
            if uuid in keep:
                keep.update(plan[uuid].upstream)
        return {u: pb for u, pb in plan.items() if u in keep}
    if only:
        return {only: plan[only]}
    if start:
        keep = {start}
        for uuid, pb in plan.items():  # topological order
            if any(u in keep for u in pb.upstream):
                keep.add(uuid)
        return {u: pb for u, pb in plan.items() if u in keep}
    return dict(plan)


def _read_sources(spec: Any, selected: dict, bundle: Path | None = None) -> dict[str, tuple[str, str, Path]]:
    """Read and syntax-check every selected block before anything runs. A fresh process
    takes the compiled code from the pipeline's bundle (loader.load_code_bundle) and
    rewrites the bundle when a block had to be compiled."""
    sources = {}
    for uuid, pb in selected.items():
        if pb.type == "global_data_product":
            continue
        path = pb.spec.file_path
        if path is None:
            raise BlockLoadError(
                f"block type '{pb.type}' has no file to run", block=uuid, file=spec.path
            )
        path = path if isinstance(path, Path) else Path(path)
        source, code_hash = read_source(path, uuid)
        sources[uuid] = (source, code_hash, path)
    use_bundle = bundle is not None and len(sources) > 1
    fresh = [u for u, (_s, h, p) in sources.items() if not is_compiled(p, h)]
    if fresh and use_bundle:
        load_code_bundle(bundle)
        fresh = [u for u in fresh if not is_compiled(sources[u][2], sources[u][1])]
    for uuid, (source, code_hash, path) in sources.items():
        compile_block(path, uuid, source, code_hash)
    if fresh and use_bundle:
        save_code_bundle(bundle, [(str(p), h) for _s, h, p in sources.values()])
    return sources


def _bundle_path(runner: Any) -> Path | None:
    data_dir = getattr(runner.session, "data_dir", None)
    spec_path = getattr(runner.spec, "path", None)
    if data_dir is None or spec_path is None:
        return None
    return marshal_files.cache_file(data_dir, "code", spec_path)


def _read_sources_or_report(
    spec: Any, selected: dict, bundle: Path | None
) -> dict[str, tuple[str, str, Path]]:
    try:
        return _read_sources(spec, selected, bundle)
    except BlockLoadError:
        spec.validate()  # names every missing file, with the pipeline's line
        raise


def _attached_files(spec: Any) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    callbacks: dict[str, list[Path]] = {}
    conditions: dict[str, list[Path]] = {}
    for attr, target in (("callbacks", callbacks), ("conditionals", conditions)):
        for extra in getattr(spec, attr, None) or []:
            if extra.file_path is None:
                continue
            for u in extra.upstream_blocks or []:
                target.setdefault(u, []).append(Path(extra.file_path))
    return callbacks, conditions


def _external_inputs(runner: Any, plan: dict, selected: dict) -> dict[str, Input]:
    """Upstream outputs stored by earlier runs, for --block / --from-block."""
    externals: dict[str, Input] = {}
    spec = runner.spec
    for pb in selected.values():
        for u in pb.upstream:
            if u in selected or u in externals:
                continue
            if plan[u].lineage or plan[u].dynamic:
                raise BlockyardError(
                    f"cannot run from the stored outputs of dynamic block '{u}'",
                    block=pb.uuid,
                    pipeline=spec.uuid,
                    hint="run the whole pipeline instead",
                )
            row = runner.session.db.latest_block_run(runner.project, spec.uuid, u)
            if not row or not row.get("output_ref"):
                raise BlockyardError(
                    f"upstream block '{u}' has no stored output yet",
                    block=pb.uuid,
                    pipeline=spec.uuid,
                    hint=f"run the pipeline once, or run with --from-block {u}",
                )
            run_id, node_uuid = row["output_ref"].split("/", 1)
            outputs = runner.session.store.load_outputs(int(run_id), node_uuid)
            externals[u] = Input("external", value=as_argument(outputs), digest=row.get("digest"))
    return externals
