"""Bad input: one clear message naming file, block and line; the run is recorded
as failed with it; nothing stored before is lost."""
from __future__ import annotations

import pytest

import blockyard
from blockyard.errors import BlockyardError
from wsbuilder import block, write_pipeline


@pytest.fixture
def ws(tmp_path, monkeypatch):
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATABASE_URL", raising=False)
    write_pipeline(root, "p", "good", [
        block("a", """
            @custom
            def a():
                return 42
            """),
    ])
    return root


def _db(root):
    from blockyard.session import session_for
    from blockyard.project import Workspace

    return session_for(Workspace.open(root)).db


def _assert_recorded(root, result, *fragments):
    assert result.status == "failed"
    for f in fragments:
        assert f in result.error, (f, result.error)
    row = _db(root).get_pipeline_run(result.run_id)
    assert row["status"] == "failed" and row["error"] == result.error


def _good_output_survives(root):
    good = blockyard.run_pipeline("p/good", workspace=root)
    assert good.ok and good.output("a") == 42


def test_syntax_error_names_file_and_line(ws):
    blockyard.run_pipeline("p/good", workspace=ws)
    write_pipeline(ws, "p", "bad", [
        block("broken", """
            @custom
            def broken(:
                return 1
            """),
    ])
    result = blockyard.run_pipeline("p/bad", workspace=ws)
    _assert_recorded(ws, result, "broken.py:2", "syntax error", "broken")
    _good_output_survives(ws)


def test_no_decorated_function(ws):
    write_pipeline(ws, "p", "bad", [block("plain", "def f():\n    return 1\n")])
    result = blockyard.run_pipeline("p/bad", workspace=ws)
    _assert_recorded(ws, result, "plain.py", "no decorated function", "'plain'")


def test_upstream_count_mismatch_names_def_line(ws):
    write_pipeline(ws, "p", "bad", [
        block("a", "@custom\ndef a():\n    return 1\n"),
        block("b", "@custom\ndef b():\n    return 1\n"),
        block("c", "# takes one input\n\n@custom\ndef c(only_one):\n    return 1\n", upstream=["a", "b"]),
    ])
    result = blockyard.run_pipeline("p/bad", workspace=ws)
    _assert_recorded(ws, result, "c.py:4", "2 upstream input(s)", "takes 1")


def test_cycle_is_named(ws):
    write_pipeline(ws, "p", "bad", [
        block("a", "@custom\ndef a(x):\n    return 1\n", upstream=["c"]),
        block("b", "@custom\ndef b(x):\n    return 1\n", upstream=["a"]),
        block("c", "@custom\ndef c(x):\n    return 1\n", upstream=["b"]),
    ])
    result = blockyard.run_pipeline("p/bad", workspace=ws)
    _assert_recorded(ws, result, "cycle")
    assert any(s in result.error for s in ("a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"))


def test_unknown_upstream(ws):
    write_pipeline(ws, "p", "bad", [
        block("a", "@custom\ndef a(x):\n    return 1\n", upstream=["ghost"]),
    ])
    result = blockyard.run_pipeline("p/bad", workspace=ws)
    _assert_recorded(ws, result, "ghost", "metadata.yaml")


def test_missing_block_file(ws):
    write_pipeline(ws, "p", "bad", [block("nofile", None)])
    result = blockyard.run_pipeline("p/bad", workspace=ws)
    _assert_recorded(ws, result, "nofile")
    assert "custom/nofile.py" in result.error


def test_malformed_yaml_names_line(ws):
    path = write_pipeline(ws, "p", "bad", [block("x", "@custom\ndef x():\n    return 1\n")])
    path.write_text("blocks:\n- uuid: x\n  type: custom\n   upstream_blocks: [\n")
    with pytest.raises(BlockyardError) as info:
        blockyard.run_pipeline("p/bad", workspace=ws)
    text = str(info.value)
    assert "metadata.yaml" in text and (":3" in text or ":4" in text), text
    runs = _db(ws).list_pipeline_runs(pipeline_uuid="bad")
    assert runs and runs[0]["status"] == "failed" and "metadata.yaml" in runs[0]["error"]
    _good_output_survives(ws)


def test_unknown_pipeline_lists_choices_and_is_recorded(ws):
    with pytest.raises(BlockyardError) as info:
        blockyard.run_pipeline("nope", workspace=ws)
    assert "nope" in str(info.value) and "good" in str(info.value)
    runs = _db(ws).list_pipeline_runs(pipeline_uuid="nope")
    assert runs and runs[0]["status"] == "failed" and "nope" in runs[0]["error"]


def test_runtime_error_names_line_in_block(ws):
    write_pipeline(ws, "p", "bad", [
        block("oops", "@custom\ndef oops():\n    x = {}\n    return x['missing']\n"),
    ])
    result = blockyard.run_pipeline("p/bad", workspace=ws)
    _assert_recorded(ws, result, "oops.py:4", "KeyError")
