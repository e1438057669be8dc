"""The store's lean path for small JSON outputs gives exactly what the general path gives:
the same manifest entries, bytes and digests (they feed cache keys and integrity checks)."""
from __future__ import annotations

import collections
import hashlib
import json
import multiprocessing as mp
import os
import sys

import pytest

from blockyard.store import ArtifactStore, candidate_codecs, get_codec, register_codec, unregister_codec
from blockyard.store import codecs as codecs_mod
from blockyard.store import summary as summary_mod
from blockyard.store.fs_ops import _tmp_tag


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "outputs")


def _nested(depth):
    value = 1
    for i in range(depth):
        value = {"k": [value, i]}
    return value


SCALARS = [
    None, True, False, 0, -5, 2**70, 10**39, 10**40, 10**50, 1.5, -0.0, 1e300, 1e-7, 1e22,
    float("nan"), float("inf"), float("-inf"),
    "", "hello", "héllo\u2028 ☃ \U0001f600", "\ud800x", "it's \"q\"", "a" * 196, "a" * 198, "a" * 199,
    "a" * 200, "a" * 300, "\x00" * 50, "\n" * 99, "'" * 10 + '"',
]
VALUES = SCALARS + [
    {"a": 1}, [], {}, [1, 2.5, "x", None, True, {"z": [1]}], _nested(6), _nested(45), list(range(12)),
    {f"k{i}": i for i in range(15)}, {"x" * 250: "y" * 250}, [1.0, float("nan")], "a" * (16 * 1024 - 2),
    "a" * (16 * 1024 - 1), list(range(5000)),
]


def _reference_entry(obj):
    """The inline entry as the general path builds it (json.dumps + the codec's summary
    through strict()), or None when the value does not go inline."""
    try:
        data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        return None
    if len(data) > 16 * 1024:
        return None
    summary, sample = ArtifactStore._summarize(get_codec("json"), obj)
    return {
        "name": "output_0",
        "codec": "json",
        "file": None,
        "inline": data.decode(),
        "bytes": len(data),
        "blake2b": hashlib.blake2b(b"inline\0" + data).hexdigest(),
        "summary": summary,
        "sample": sample,
    }


@pytest.mark.parametrize("obj", VALUES, ids=lambda v: repr(v)[:30])
def test_fast_inline_entry_equals_general_path(store, obj):
    assert codecs_mod.json_first(obj)
    assert candidate_codecs(obj)[0] is get_codec("json")
    fast = store._save_inline("output_0", obj, None)
    general = store._save_inline("output_0", obj, get_codec("json"))
    assert fast == general == _reference_entry(obj)
    if fast is not None:
        assert json.dumps(fast) == json.dumps(_reference_entry(obj))  # same key order too


@pytest.mark.parametrize("obj", SCALARS + [10**5000], ids=lambda v: repr(v)[:30] if type(v) is not int else str(v % 1000))
def test_json_scalar_equals_json_value(obj):
    fast = summary_mod.json_scalar(obj)
    assert fast == summary_mod.json_value(obj)
    if fast[1] is not None and type(obj) is int and obj > 10**4000:
        return  # json cannot write an int that long; the store pickles it
    assert json.dumps(fast) == json.dumps(summary_mod.json_value(obj))


def test_pinned_digests(store):
    # Digests written before the lean path existed: cache keys must not change.
    expected = {
        "none": ([None], "f664cd0832b31ce265e65362ed77565a1a1650add85592583db9efb25c6a9c37"),
        "int": ([42], "fcc6a2e52d9899106d5ce394c0368cad66e601d7384855f695927771ae2952c5"),
        "dict": ([{"a": 1}], "1944c093af49a66a0da996ac2e35a29109cb3a1998d7187291eed35d0c08473a"),
        "str": (["héllo"], "67d04b15ee9992847ad2d22237276fe5f432bce109405e6ac1fc524dbf594f6e"),
        "two": ([1.5, [True, None]], "792e50f844f3af4c4b9dfd2766a5f9e4f4d5c20d52ad7cdb2eab69727641284d"),
    }
    for node, (outputs, digest) in expected.items():
        assert store.save_outputs(1, node, outputs).digest == digest, node


@pytest.mark.parametrize("run_id", [1, "run/x", "..", 7.5])
def test_manifest_file_is_the_json_of_the_returned_manifest(store, run_id):
    outputs = [None, 42, "x" * 300, {"a": [1, 2]}, (1, 2), float("nan")]
    m = store.save_outputs(run_id, "a/b:c", outputs)
    raw = open(store.manifest_path(run_id, "a/b:c"), "rb").read()
    assert raw == json.dumps(m.to_dict(), separators=(",", ":"), default=str, allow_nan=False).encode()
    assert [o["file"] is None for o in m.outputs] == [True, True, True, True, False, False]
    assert store.load_outputs(run_id, "a/b:c")[:5] == [None, 42, "x" * 300, {"a": [1, 2]}, (1, 2)]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(store.manifest_path(run_id, "a/b:c")).st_mode & 0o777 == 0o666 & ~umask


class _Codec:
    extension = ".t"

    def __init__(self, name, claims):
        self.name = name
        self.claims = claims

    def can_encode(self, obj):
        return self.claims(obj)

    def save(self, obj, fs, path):
        with fs.open(path, "wb") as f:
            f.write(repr(obj).encode())

    def load(self, fs, path):
        return fs.cat_file(path).decode()


def _boom(obj):
    raise RuntimeError("cannot tell")


def test_codecs_registered_ahead_of_json_are_still_asked(store):
    values = [None, 3, "s", [1], {"a": 1}]
    register_codec(_Codec("test_ints", lambda o: type(o) is int))
    register_codec(_Codec("test_boom", _boom))
    try:
        for v in values:
            assert codecs_mod.json_first(v) == (candidate_codecs(v)[0] is get_codec("json"))
        m = store.save_outputs(1, "n", values)
        assert [o["codec"] for o in m.outputs] == ["json", "test_ints", "json", "json", "json"]
        assert m.outputs[1]["file"] == "output_1.t"
    finally:
        unregister_codec("test_ints")
        unregister_codec("test_boom")
    assert codecs_mod.json_first(3)
    assert store.save_outputs(1, "n", [3]).outputs[0]["file"] is None


def test_a_codec_replacing_json_turns_the_fast_path_off(store):
    builtin = get_codec("json")
    register_codec(_Codec("json", lambda o: type(o) is int))
    try:
        assert not codecs_mod.json_first(3) and not codecs_mod.json_first(None)
        m = store.save_outputs(1, "n", [3, None])
        assert m.outputs[0]["codec"] == "json" and m.outputs[0]["file"] is None  # still inline JSON
        assert m.outputs[1]["codec"] == "cloudpickle"  # the replacement does not take None
    finally:
        register_codec(builtin, first=False)
    assert codecs_mod.json_first(None)
    assert candidate_codecs(None)[0] is builtin


def test_non_plain_values_take_the_general_path():
    for v in [(1,), {1: 2}, collections.OrderedDict(a=1), [(1,)], {1, 2}, b"x", _nested(51)]:
        assert not codecs_mod.json_first(v)


def test_node_paths_match_the_joined_layout(tmp_path):
    store = ArtifactStore(tmp_path / "outputs")
    for run_id, node, parts in [
        (1, "n", ("1", "n")),
        ("run/x", "a/b", ("run%2Fx", "a%2Fb")),
        (2, "..", ("2", "%2E%2E")),
        (True, "x", ("True", "x")),
        (1.0, "x", ("1.0", "x")),
    ]:
        expected = os.path.join(store.root, "runs", *parts)
        assert store.node_path(run_id, node) == expected
        assert store.node_path(run_id, node) == expected  # cached
        assert store.manifest_path(run_id, node) == os.path.join(expected, "manifest.json")
    memory = ArtifactStore("memory://blockyard-fast-path-paths")
    assert memory.node_path(3, "a b") == f"{memory.root}/runs/3/a%20b"


def test_node_path_cache_is_bounded(tmp_path, monkeypatch):
    from blockyard.store import artifact_store

    monkeypatch.setattr(artifact_store, "_PATHS_MAX", 5)
    store = ArtifactStore(tmp_path / "outputs")
    for i in range(12):
        assert store.node_path(i, f"n{i}") == os.path.join(store.root, "runs", str(i), f"n{i}")
        assert len(store._node_dirs) <= 5


def _child_tag(queue):
    queue.put((os.getpid(), _tmp_tag()))


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_temp_names_carry_the_pid_of_a_forked_child():
    assert _tmp_tag().startswith(f"{os.getpid()}-")
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_tag, args=(queue,))
    proc.start()
    pid, tag = queue.get(timeout=60)
    proc.join(60)
    assert pid != os.getpid() and tag.startswith(f"{pid}-")
