"""Loading pipelines fast without changing what is loaded: the plain-YAML construction,
plain_copy, the per-process cache of parsed metadata.yaml, cached block paths and the
quick entry check (blockyard.project.yaml_io, pipeline, block)."""
from __future__ import annotations

import copy
import datetime
import math
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from blockyard.errors import ProjectError
from blockyard.project import PipelineSpec, Workspace
from blockyard.project.block import _check_entry, _plainly_valid
from blockyard.project.yaml_io import parse_yaml, plain_copy

PIPELINE = """
blocks:
- uuid: load
  type: data_loader
  name: first
  upstream_blocks: []
  configuration:
    file_source:
      path: proj/data_loaders/load.py
- uuid: shape
  type: transformer
  upstream_blocks:
  - load
  configuration: {}
- uuid: save
  type: data_exporter
  upstream_blocks: [shape, load]
  retry_config: {retries: 2}
name: chain
tags: [a]
variables:
  k: 1
  nested: {x: [1, 2]}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    """A single-project workspace `proj` with pipeline `chain` and its block files."""
    monkeypatch.delenv("BLOCKYARD_WORKSPACE", raising=False)
    root = tmp_path / "proj"
    write(root / "metadata.yaml", "project_uuid: proj\n")
    write(root / "data_loaders/load.py", "def f():\n    return 1\n")
    write(root / "transformers/shape.py", "def f(x):\n    return x\n")
    write(root / "data_exporters/save.py", "def f(x, y):\n    pass\n")
    write(root / "pipelines/chain/metadata.yaml", PIPELINE)
    return root


def load(root: Path) -> PipelineSpec:
    return Workspace.open(root).find_pipeline("proj/chain")


def meta(root: Path) -> Path:
    return root / "pipelines/chain/metadata.yaml"


# ---------------------------------------------------------------- the cache of parses


def test_edit_on_disk_is_seen_even_with_same_size_mtime_and_inode(ws):
    assert load(ws).block("load").name == "first"
    path = meta(ws)
    before = path.stat()
    text = path.read_text(encoding="utf-8")
    with open(path, "r+", encoding="utf-8") as fh:  # in place: same inode
        fh.write(text.replace("name: first", "name: other"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    assert load(ws).block("load").name == "other"


def test_loads_do_not_share_data(ws):
    load(ws).save()  # the file as Blockyard writes it (with downstream_blocks): saving again writes nothing
    load(ws)  # parsed here; the next loads are built from that parse
    first = load(ws)
    pristine = copy.deepcopy(first.raw)
    first.raw["tags"].append("changed")
    first.raw["blocks"][0]["configuration"]["file_source"]["path"] = "elsewhere.py"
    first.block("load").configuration["extra"] = 1
    first.block("save").upstream_blocks.append("x")
    first.block("save").retry_config["retries"] = 9
    first.variables["nested"]["x"].append(3)
    second = load(ws)
    assert second.raw == pristine == yaml.safe_load(meta(ws).read_text(encoding="utf-8"))
    assert second.blocks[0].raw is not first.blocks[0].raw
    assert second.block("load").configuration == {"file_source": {"path": "proj/data_loaders/load.py"}}
    assert second.block("save").upstream_blocks == ["shape", "load"]
    assert second.block("save").retry_config == {"retries": 2}
    assert second.variables == {"k": 1, "nested": {"x": [1, 2]}}
    text = meta(ws).read_text(encoding="utf-8")
    assert second.save() is False and meta(ws).read_text(encoding="utf-8") == text
    # a block's attributes are copies: raw changes only when the spec is synced (saved)
    second.block("load").configuration["k"] = 1
    assert "k" not in second.raw["blocks"][0]["configuration"]
    second.sync_raw()
    assert second.raw["blocks"][0]["configuration"]["k"] == 1
    # the first spec's edits are still its own and are saved when asked
    first.save()
    assert load(ws).variables["nested"]["x"] == [1, 2, 3]


def test_a_spec_from_a_kept_parse_saves_edits_to_raw_and_to_attributes(ws):
    # A block built from the cached parse works out its values as loaded from that parse
    # (not from its own `raw`, which a caller may change): both kinds of edit are saved.
    load(ws).save()
    load(ws)  # parsed here; the next loads are built from that parse
    spec = load(ws)
    spec.raw["blocks"][0]["name"] = "from raw"  # raw edited directly, the attribute not
    spec.block("shape").configuration["k"] = 2
    spec.block("save").upstream_blocks.remove("load")
    spec.block("save").timeout = 5
    assert spec.save() is True
    again = load(ws)
    assert again.block("load").name == "from raw"
    assert again.block("shape").configuration == {"k": 2}
    assert again.block("save").upstream_blocks == ["shape"]
    assert again.block("save").timeout == 5
    assert again.raw["blocks"][2]["timeout"] == 5  # written as Mage writes it, an int
    assert again.save() is False
    # the next load, built from the same kept parse, did not see this one's edits
    assert load(ws).block("shape").configuration == {"k": 2}
    again.block("shape").configuration["k"] = 3
    assert load(ws).block("shape").configuration == {"k": 2}


def test_raw_of_a_spec_from_a_kept_parse_is_its_own_and_is_the_pipelines_entry(ws):
    # The copy of a cached parse is made when `raw` is first asked for; a block asked
    # first still gets the entry that `pipeline.raw` holds, as when raw is copied at once.
    load(ws)
    first, second = load(ws), load(ws)
    assert first.raw_value("tags") == ["a"] and first.block("save").raw_value("retry_config") == {"retries": 2}
    block_raw = first.block("save").raw
    assert first.raw["blocks"][2] is block_raw
    assert second.raw["blocks"][2] is second.block("save").raw is not block_raw
    block_raw["retry_config"]["retries"] = 7
    first.raw["tags"].append("changed")
    first.block("load").raw["configuration"]["file_source"]["path"] = "elsewhere.py"
    third = load(ws)
    for spec in (second, third):
        assert spec.raw_value("tags") == ["a"] and spec.raw["tags"] == ["a"]
        assert spec.block("save").raw["retry_config"] == {"retries": 2}
        assert spec.block("load").file_source == "proj/data_loaders/load.py"
    assert third.block("save").raw_value("retry_config") == {"retries": 2}
    # a block taken out before the pipeline's copy gets a copy of its own
    fourth = load(ws)
    removed = fourth.blocks.pop(0)
    assert fourth.raw["blocks"][0]["uuid"] == "load"  # raw unchanged until synced
    assert removed.raw == yaml.safe_load(PIPELINE)["blocks"][0] and removed.raw is not fourth.raw["blocks"][0]


def test_edits_saved_by_one_spec_are_seen_by_the_next_load(ws):
    spec = load(ws)
    spec.set_variables({"k": 2})
    assert load(ws).variables == {"k": 2}
    spec.add_block("extra", "custom", upstream=["save"])
    again = load(ws)
    assert again.block("extra").upstream_blocks == ["save"]
    assert again.block("save").downstream_blocks == ["extra"]
    again.rename_block("extra", "renamed")
    assert [b.uuid for b in load(ws).blocks] == ["load", "shape", "save", "renamed"]
    again.set_upstream("renamed", ["load"])
    assert load(ws).block("renamed").upstream_blocks == ["load"]
    again.remove_block("renamed")
    assert load(ws).get_block("renamed") is None


def test_bad_file_after_a_good_load_names_file_and_line(ws):
    load(ws)
    path = meta(ws)
    write(path, "blocks:\n- uuid: a\n  type: custom\n  upstream_blocks: [b\nname: x\n")
    for _ in range(2):  # a failed parse is not remembered
        with pytest.raises(ProjectError) as err:
            load(ws)
        assert err.value.line == 5 and "invalid YAML" in str(err.value)
        assert f"{path.resolve()}:5" in str(err.value)
    write(path, "blocks:\n- uuid: a\n  type: custom\n- uuid: b\n  type: custom\n  upstream_blocks: a\n")
    with pytest.raises(ProjectError) as err:
        load(ws)
    assert err.value.line == 6 and err.value.block == "b" and "must be a list" in str(err.value)
    write(path, PIPELINE)
    assert load(ws).block_uuids() == ["load", "shape", "save"]


def test_cached_load_keeps_lines_for_problems(ws):
    text = PIPELINE.replace("  - load\n", "  - nowhere\n")
    write(meta(ws), text)
    for _ in range(2):  # the first load parses, the second one comes from the cache
        problems = load(ws).problems()
        assert [(p.block, p.line) for p in problems] == [("shape", 12)]
        assert problems[0].hint == "known blocks: load, shape, save"


# ---------------------------------------------------------------- YAML construction

SAME_AS_PYYAML = [
    "a: 1\nb: 0x1f\nc: 0o17\nd: 1_000\ne: 1:30\nf: -0b101\ng: +12\n",
    "x: .inf\ny: -.Inf\nz: .nan\nw: 1.5e3\nv: 6.8523015e+5\nu: 1_0.5\n",
    "t: yes\nf: Off\nn: ~\ne:\nT: True\nN: NULL\n",
    "q: '123'\nr: \"yes\"\ns: !!str 12\ni: !!int '7'\nfl: !!float '1'\n",
    "when: 2024-05-15 01:11:30\nday: 2024-05-15\n",
    "base: &b {x: 1, y: [1, 2]}\nother: *b\nlist: &l [1]\nagain: *l\n",
    "base: &b {x: 1}\nmerged:\n  <<: *b\n  y: 2\n",
    "s: !!set {a, b}\nb: !!binary aGVsbG8=\no: !!omap [a: 1, b: 2]\np: !!pairs [a: 1, a: 2]\n",
    "a: 1\na: 2\n1: int key\ntrue: bool key\n~: null key\n1.5: float key\n",
    "- 1\n- [a, {b: null, c: [d, {}]}]\n- []\n",
    "",
    "# only a comment\n",
    "plain scalar\n",
    "&a [*a, 1]\n",
    "=: value key\n",
    "[" * 990 + "]" * 990,
]


def same(a, b) -> bool:
    """Equal values of the same types (NaN equal to NaN), compared without recursion."""
    stack = [(a, b)]
    pairs = set()
    while stack:
        x, y = stack.pop()
        if (id(x), id(y)) in pairs:
            continue
        pairs.add((id(x), id(y)))
        if type(x) is not type(y):
            return False
        if isinstance(x, dict):
            if list(x) != list(y):
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y))
        elif isinstance(x, float) and math.isnan(x):
            if not math.isnan(y):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("text", SAME_AS_PYYAML)
def test_parse_gives_what_pyyaml_gives(text):
    ours = parse_yaml(text, "x.yaml").data
    theirs = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert same(ours, theirs)
    if "other: *b" in text:  # an alias is the same object, as in PyYAML
        assert ours["other"] is ours["base"] and ours["again"] is ours["list"]
    if text.startswith("&a"):
        assert ours[0] is ours


@pytest.mark.parametrize("text", ["? [1, 2]\n: x\n", "x: !custom 1\n", "x: !!python/name:os.system\n"])
def test_values_pyyaml_refuses_are_refused(text):
    with pytest.raises(yaml.YAMLError):
        yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    with pytest.raises(ProjectError) as err:
        parse_yaml(text, "x.yaml")
    assert err.value.file == "x.yaml" and err.value.line is not None


def test_line_of_and_item_lines_agree():
    doc = parse_yaml(PIPELINE.lstrip("\n"), "m.yaml")
    assert doc.line_of("blocks", 1, "upstream_blocks", 0) == 12
    assert doc.line_of("blocks", 2, "upstream_blocks", 1) == 16
    for keys in [("blocks", 1, "upstream_blocks"), ("blocks", 2, "upstream_blocks"), ("blocks", 0, "upstream_blocks"),
                 ("blocks", 0, "name"), ("blocks", 9, "upstream_blocks"), ("variables",), ("variables", "nested", "x"),
                 ("nowhere",), ()]:
        for count in (0, 1, 3):
            assert doc.item_lines(count, *keys) == [doc.line_of(*keys, i) for i in range(count)], keys
    assert parse_yaml("", "e.yaml").item_lines(2, "a") == [None, None]


# ---------------------------------------------------------------- copies, paths, checks


def test_plain_copy_is_a_deep_copy():
    shared = {"x": [1, 2]}
    loop: list = [1]
    loop.append(loop)
    value = {"a": shared, "b": shared, "loop": loop, "when": datetime.date(2024, 5, 15), "t": (1, [2]),
             "s": {1, 2}, "n": None, "f": 1.5, "empty": {}, "none": []}
    out = plain_copy(value)
    assert same(out, copy.deepcopy(value))
    assert out["a"] is out["b"] and out["a"] is not shared
    assert out["loop"][1] is out["loop"] and out["loop"] is not loop
    assert out["t"][1] is not value["t"][1] and out["s"] is not value["s"]
    out["a"]["x"].append(3)
    out["empty"]["k"] = 1
    assert shared == {"x": [1, 2]} and value["empty"] == {}
    assert plain_copy({}) == {} and plain_copy([]) == [] and plain_copy("s") == "s"


def test_file_path_follows_changes(ws):
    spec = load(ws)
    block = spec.block("load")
    root = ws.resolve()
    assert block.file_path == root / "data_loaders/load.py"
    write(root / "utils/other.py", "x = 1\n")
    block.configuration["file_source"]["path"] = "proj/utils/other.py"
    assert block.file_path == root / "utils/other.py"
    del block.configuration["file_source"]
    assert block.file_path == root / "data_loaders/load.py"
    block.uuid = "load2"
    assert block.file_path == root / "data_loaders/load2.py"
    block.type, block.language = "markdown", "markdown"
    assert block.file_path == root / "markdowns/load2.md"
    # a file created later at an earlier candidate wins, as before
    block = spec.block("shape")
    block.configuration["file_source"] = {"path": "transformers/moved.py"}
    assert block.file_path == root / "transformers/shape.py"
    write(root / "transformers/moved.py", "x = 1\n")
    assert block.file_path == root / "transformers/moved.py"


ENTRIES = [
    {"uuid": "a", "type": "custom"},
    {"uuid": "a", "type": "custom", "name": True},
    {"uuid": "a", "type": True},
    {"uuid": True, "type": "custom"},
    {"uuid": "", "type": "custom"},
    {"uuid": "../a", "type": "custom"},
    {"uuid": "a", "type": ""},
    {"uuid": "a", "type": "custom", "upstream_blocks": "b"},
    {"uuid": "a", "type": "custom", "upstream_blocks": ["b", 1]},
    {"uuid": "a", "type": "custom", "downstream_blocks": [1]},
    {"uuid": "a", "type": "custom", "callback_blocks": [None]},
    {"uuid": "a", "type": "custom", "conditional_blocks": {}},
    {"uuid": "a", "type": "custom", "configuration": []},
    {"uuid": "a", "type": "custom", "configuration": {}},
    {"uuid": "a", "type": "custom", "configuration": {"file_source": "x"}},
    {"uuid": "a", "type": "custom", "configuration": {"file_source": {"path": 3}}},
    {"uuid": "a", "type": "custom", "configuration": {"file_source": {"path": None}}},
    {"uuid": "a", "type": "custom", "retry_config": 3},
    {"uuid": "a", "type": "custom", "timeout": True},
    {"uuid": "a", "type": "custom", "timeout": "30"},
    {"uuid": "a", "type": "custom", "timeout": "soon"},
    {"uuid": "a", "type": "custom", "timeout": 2.5, "language": "sql", "name": "A"},
    ["not", "a", "mapping"],
]


@pytest.mark.parametrize("entry", ENTRIES)
def test_quick_entry_check_never_passes_a_bad_entry(entry):
    if _plainly_valid(entry):
        _check_entry(entry, group="blocks", index=0, file=Path("m.yaml"), line_of=lambda *k: None, pipeline_uuid="p")


def test_quick_entry_check_passes_usual_entries():
    assert _plainly_valid(ENTRIES[0]) and _plainly_valid(ENTRIES[13]) and _plainly_valid(ENTRIES[21])


def test_to_dict_downstream_matches_downstream_of(ws):
    write(meta(ws), PIPELINE + "widgets:\n- uuid: w\n  type: chart\n  upstream_blocks: [save, save]\n")
    spec = load(ws)
    spec.block("save").upstream_blocks += ["save", "shape"]  # a self reference and a repeat
    data = spec.to_dict()
    for group in ("blocks", "widgets"):
        for entry, block in zip(data[group], getattr(spec, group)):
            assert entry["downstream_blocks"] == block.downstream_blocks
    assert data["blocks"][0]["downstream_blocks"] == ["shape", "save"]
