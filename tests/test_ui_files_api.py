"""The Files page's API (/ui-api/files) without a browser: listing one folder, reading,
writing (Python is compiled first), creating, moving, deleting, upload and download, and
the path guard (no '..', no absolute path, no symlink out; hidden state never listed or served)."""
from __future__ import annotations

import os

import pytest
from fastapi.testclient import TestClient

from test_server_support import make_workspace


@pytest.fixture()
def files(tmp_path):
    from blockyard.server.app import create_app
    from blockyard.server.config import ServerConfig
    from blockyard.ui import mount

    space = make_workspace(tmp_path)
    client = TestClient(mount(create_app(space.root, ServerConfig())))
    csrf = client.get("/ui-api/session").json()["csrf"]
    client.headers["X-Blockyard-CSRF"] = csrf
    return client, space.root


def names(client, path=""):
    r = client.get("/ui-api/files/list", params={"path": path})
    assert r.status_code == 200, r.text
    return [(e["name"], e["type"]) for e in r.json()["entries"]]


def test_listing_is_one_folder_folders_first_and_hides_state(files):
    client, root = files
    (root / ".blockyard").mkdir(exist_ok=True)
    (root / ".blockyard" / "blockyard.db").write_text("x")
    (root / "secrets.key").write_text("k")
    (root / "runs.sqlite").write_text("s")
    (root / "zz_notes.md").write_text("# notes\n")
    (root / "aa_dir").mkdir()
    (root / "aa_dir" / "deep.txt").write_text("deep")
    listed = names(client)
    assert ("aa_dir", "dir") in listed and ("zz_notes.md", "file") in listed
    assert not {n for n, _ in listed} & {".blockyard", "secrets.key", "runs.sqlite"}
    kinds = [t for _, t in listed]
    assert kinds == sorted(kinds)  # "dir" < "file": folders first
    assert ("deep.txt", "file") not in listed  # lazy: only this folder
    assert names(client, "aa_dir") == [("deep.txt", "file")]
    for hidden in (".blockyard", ".blockyard/blockyard.db", "secrets.key"):
        assert client.get("/ui-api/files/content", params={"path": hidden}).status_code == 404
        assert client.get("/ui-api/files/download", params={"path": hidden}).status_code == 404
    assert client.get("/ui-api/files/list", params={"path": ".blockyard"}).status_code == 404


def test_path_guard_refuses_escapes(files, tmp_path):
    client, root = files
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    os.symlink(outside, root / "link.txt")
    os.symlink(root / ".blockyard", root / "state_link") if (root / ".blockyard").exists() else None
    for bad in ("../outside.txt", "/etc/passwd", "a/../../x", "..\\x"):
        r = client.get("/ui-api/files/content", params={"path": bad})
        assert r.status_code == 400, (bad, r.text)
        assert "inside the workspace" in r.json()["detail"]
    r = client.get("/ui-api/files/content", params={"path": "link.txt"})
    assert r.status_code == 403 and "outside the workspace" in r.json()["detail"]
    assert client.put("/ui-api/files/content", json={"path": "../evil.py", "content": "x = 1\n"}).status_code == 400
    (root / "plain.txt").write_text("p")
    assert client.post("/ui-api/files/move", json={"path": "plain.txt", "to": "../moved"}).status_code == 400
    assert not (tmp_path / "evil.py").exists() and outside.read_text() == "secret"
    if (root / "state_link").is_symlink():
        # The workspace path guard refuses a link into .blockyard/ before the listing looks.
        r = client.get("/ui-api/files/list", params={"path": "state_link"})
        assert r.status_code == 403 and ".blockyard" in r.json()["detail"], r.text


def test_create_write_python_checked_move_delete(files):
    client, root = files
    r = client.post("/ui-api/files", json={"path": "utils/data_preparation", "type": "folder"})
    assert r.status_code == 201
    r = client.post("/ui-api/files", json={"path": "utils/data_preparation/cleaning.py", "type": "file"})
    assert r.status_code == 201
    assert client.post("/ui-api/files", json={"path": "utils/data_preparation/cleaning.py"}).status_code == 409
    good = "def clean(df):\n    return df.dropna()\n"
    r = client.put("/ui-api/files/content", json={"path": "utils/data_preparation/cleaning.py", "content": good})
    assert r.status_code == 200 and r.json()["language"] == "python"
    bad = "def clean(df)\n    return df\n"
    r = client.put("/ui-api/files/content", json={"path": "utils/data_preparation/cleaning.py", "content": bad})
    assert r.status_code == 422
    body = r.json()
    assert body["error"]["line"] == 1 and "syntax error" in body["detail"]
    assert "cleaning.py" in body["error"]["file"]
    assert (root / "utils/data_preparation/cleaning.py").read_text() == good  # untouched
    got = client.get("/ui-api/files/content", params={"path": "utils/data_preparation/cleaning.py"}).json()
    assert got["content"] == good and got["language"] == "python"

    r = client.post("/ui-api/files/move", json={"path": "utils/data_preparation/cleaning.py",
                                               "to": "utils/data_preparation/clean.py"})
    assert r.status_code == 200 and (root / "utils/data_preparation/clean.py").is_file()
    assert client.post("/ui-api/files/move", json={"path": "utils", "to": "utils/inner"}).status_code == 400
    assert client.post("/ui-api/files/move", json={"path": "nope.txt", "to": "b.txt"}).status_code == 404
    r = client.delete("/ui-api/files", params={"path": "utils"})
    assert r.status_code == 200 and not (root / "utils").exists()
    assert client.delete("/ui-api/files", params={"path": ""}).status_code in (400, 422)
    assert root.is_dir()


def test_upload_download_and_binary(files):
    client, root = files
    data = bytes(range(256)) * 10
    r = client.put("/ui-api/files/upload", params={"path": "data.bin"}, content=data)
    assert r.status_code == 201 and (root / "data.bin").read_bytes() == data
    assert client.put("/ui-api/files/upload", params={"path": "data.bin"}, content=b"x").status_code == 409
    r = client.get("/ui-api/files/download", params={"path": "data.bin"})
    assert r.status_code == 200 and r.content == data
    assert 'filename="data.bin"' in r.headers["content-disposition"]
    r = client.get("/ui-api/files/content", params={"path": "data.bin"})
    assert r.status_code == 415 and "download it" in r.json()["detail"]
    r = client.put("/ui-api/files/upload", params={"path": "broken.py"}, content=b"def f(:\n")
    assert r.status_code == 422 and not (root / "broken.py").exists()


def test_writes_need_csrf(files):
    client, _ = files
    del client.headers["X-Blockyard-CSRF"]
    assert client.post("/ui-api/files", json={"path": "x.txt"}).status_code == 403
