"""A pipeline's parse is kept on disk for fresh processes (project/parse_cache.py): the
same text is not parsed again, any edit is, and what comes back is the same spec —
lines in errors included."""
from __future__ import annotations

from pathlib import Path

import pytest

from blockyard.errors import ProjectError
from blockyard.project import Workspace
from blockyard.project import pipeline as pipeline_mod
from wsbuilder import block, write_pipeline


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.delenv("BLOCKYARD_HOME", raising=False)
    root = tmp_path / "ws"
    root.mkdir()
    write_pipeline(root, "proj", "p", [
        block("load", "@data_loader\ndef load():\n    return 1\n", type="data_loader"),
        block("double", "@transformer\ndef double(x):\n    return 2 * x\n", type="transformer",
              upstream=["load"]),
    ], variables={"n": 3})
    return root


def _fresh_process(monkeypatch) -> list[Path]:
    """Forget the in-process parses and count the YAML parses from now on."""
    pipeline_mod._cache.clear()
    parses: list[Path] = []
    real = pipeline_mod.parse_yaml

    def counting(text, path):
        parses.append(Path(path))
        return real(text, path)

    monkeypatch.setattr(pipeline_mod, "parse_yaml", counting)
    return parses


def _load(root: Path):
    return Workspace.open(root).find_pipeline("proj/p")


def _shape(spec) -> list:
    return [(b.uuid, b.type, b.upstream_blocks, b.line, b.upstream_lines, b.configuration)
            for b in spec.blocks] + [spec.variables]


def test_an_unchanged_pipeline_is_not_parsed_again_in_a_new_process(ws, monkeypatch):
    parses = _fresh_process(monkeypatch)
    first = _load(ws)
    assert len(parses) == 1
    kept = list((ws / ".blockyard" / "cache" / "pipelines").glob("*.marshal"))
    assert len(kept) == 2  # the pipeline's metadata.yaml and the workspace's settings.yaml

    parses = _fresh_process(monkeypatch)
    again = _load(ws)
    assert parses == []  # from the kept parse
    assert _shape(again) == _shape(first)

    meta = ws / "proj" / "pipelines" / "p" / "metadata.yaml"
    meta.write_text(meta.read_text().replace("n: 3", "n: 4"))
    parses = _fresh_process(monkeypatch)
    edited = _load(ws)
    assert len(parses) == 1 and edited.variables == {"n": 4}


def test_errors_from_a_kept_parse_name_the_same_line(ws, monkeypatch):
    meta = ws / "proj" / "pipelines" / "p" / "metadata.yaml"
    meta.write_text(meta.read_text().replace("- load", "- lod"))
    _fresh_process(monkeypatch)
    with pytest.raises(ProjectError) as parsed_err:
        _load(ws).validate()
    parses = _fresh_process(monkeypatch)
    with pytest.raises(ProjectError) as kept_err:
        _load(ws).validate()
    assert parses == []
    assert "unknown upstream block 'lod'" in str(kept_err.value)
    assert kept_err.value.line == parsed_err.value.line is not None


def test_a_torn_kept_parse_is_ignored(ws, monkeypatch):
    _fresh_process(monkeypatch)
    first = _load(ws)
    for kept in (ws / ".blockyard" / "cache" / "pipelines").glob("*.marshal"):
        kept.write_bytes(kept.read_bytes()[:40])
    parses = _fresh_process(monkeypatch)
    assert _shape(_load(ws)) == _shape(first)
    assert len(parses) == 1


def test_a_parse_marshal_cannot_hold_is_not_kept(ws, monkeypatch):
    meta = ws / "proj" / "pipelines" / "p" / "metadata.yaml"
    meta.write_text(meta.read_text() + "created: 2024-01-02 03:04:05\n")  # a YAML timestamp
    for _ in range(2):
        parses = _fresh_process(monkeypatch)
        spec = _load(ws)
        assert len(parses) == 1
    assert str(spec.raw["created"]).startswith("2024-01-02")


def test_workspace_settings_come_from_the_kept_parse_until_edited(ws, monkeypatch):
    import blockyard.project.workspace as workspace_mod

    first = Workspace.open(ws)
    parses: list[Path] = []
    real = workspace_mod.parse_yaml
    monkeypatch.setattr(workspace_mod, "parse_yaml", lambda text, path: parses.append(Path(path)) or real(text, path))
    again = Workspace.open(ws)
    assert parses == [] and again.settings == first.settings
    assert again._project_paths == first._project_paths == {"proj": ws / "proj"}

    settings_file = ws / "settings.yaml"
    settings_file.write_text("projects:\n  proj: {}\n  ../escape: {}\n")
    with pytest.raises(ProjectError) as err:  # an edited file is parsed again, errors keep their line
        Workspace.open(ws)
    assert parses == [settings_file] and err.value.line == 3 and "../escape" in str(err.value)
    with pytest.raises(ProjectError):  # a file with an error is never kept
        Workspace.open(ws)
    assert len(parses) == 2
