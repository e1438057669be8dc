"""When a node is not executed but completed with stored outputs: the one place.

Two reasons, one mechanism (a lookup of the node's cache key among completed block
runs whose outputs are still stored and intact):
- recovery: a resumed run (itself) or a retry (the runs it retries) reuses the blocks
  its earlier attempts completed, whether or not caching is on, sensors included;
- caching, opt-in: any earlier run's block run with the same key.
The key (engine/cache.py policies) is recorded on every completed block run, so a
later cached, resumed or retried run can find it; the parts shared by every node of a
block (its files, configuration, variables) are hashed once per run.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from blockyard.engine import cache as cache_mod
from blockyard.engine.outputs import LiveOutputs
from blockyard.engine.state import Node
from blockyard.errors import StoreError

log = logging.getLogger("blockyard.engine")


class Reuse:
    def __init__(self, runner: Any) -> None:
        self.db = runner.session.db
        self.store = runner.session.store
        self.setup = runner.setup
        self.variables = runner.variables
        self.execution_date = runner.execution_date
        self.ws_root = Path(runner.session.workspace.root)
        self._static: dict[str, tuple] = {}  # per cloned block: policy, hasher, key parts
        self._variables_text = cache_mod.variables_json(self.variables)  # once per run
        self._roots = [self.ws_root.parent, self.ws_root]

    def find(self, node: Node) -> dict | None:
        """Key the node (sets node.cache_key) and return the block run whose stored
        outputs it reuses, if any."""
        pb = node.block
        recovering = bool(self.setup.recover_runs)
        caching = pb.type != "sensor" and self.setup.caching(pb)  # a sensor always polls
        if pb.type == "sensor" and not recovering:
            return None
        node.cache_key = self.key(node)
        if not (caching or recovering):
            return None
        hit = self.db.lookup_cache(
            node.cache_key, run_ids=None if caching else self.setup.recover_runs
        )
        if hit and hit.get("output_ref") and self.ref_exists(hit["output_ref"]):
            return hit
        return None

    def key(self, node: Node) -> str:
        pb = node.block
        static = self._static.get(pb.uuid)
        if static is None:
            source, code_hash, file_path = self.setup.sources[pb.uuid]
            attached = self.setup.condition_files.get(pb.uuid, []) + self.setup.callback_files.get(
                pb.uuid, []
            )
            roots = self._roots
            policy = cache_mod.policy_from((pb.spec.configuration or {}).get("cache_policy"))
            parts = cache_mod.KeyParts(
                block_type=pb.type,
                code_hash=code_hash,
                attached_hashes=[cache_mod.file_digest(p) for p in attached],
                imports_hash=",".join(
                    # a file without the word has no import statement: no stat, no parse
                    # ("" is what imports_hash gives a file that imports nothing)
                    "" if p is file_path and "import" not in source
                    else cache_mod.imports_hash(p, roots, self.ws_root)
                    for p in [file_path, *attached]
                ),
                configuration=pb.spec.configuration,
                variables=self.variables,
                variables_text=self._variables_text,
                execution_date=self.execution_date,
            )
            static = (policy, policy.block_hasher(parts), parts)
            if pb.lineage:  # kept for the block's other clones; a block without runs once
                self._static[pb.uuid] = static
        policy, hasher, parts = static
        parts.input_digests = LiveOutputs.digests(node)
        parts.dynamic_index = node.dynamic_index
        return policy.node_key(hasher, parts)

    def ref_exists(self, ref: str) -> bool:
        """Stored outputs count only if still there and readable (retention may have
        removed them; a codec may no longer exist) and intact (never served changed)."""
        from blockyard.store import get_codec

        run_id, node_uuid = ref.split("/", 1)
        manifest = self.store.manifest(int(run_id), node_uuid)
        if manifest is None or not all(get_codec(o["codec"]) is not None for o in manifest.outputs):
            return False
        try:
            self.store.verify_outputs(int(run_id), node_uuid)
        except StoreError as exc:
            log.warning("cache entry not used: %s", exc)
            return False
        return True
