"""/ui-api/files: the Files page's JSON API — list one folder of the workspace (the tree
loads lazily, one folder per request), read and write text files, create, move/rename
and delete files and folders, upload and download.

Every path is relative to the workspace root and goes through the server's guard
(`blockyard.server.deps.check_name` + `inside`: no '..', no absolute path, no symlink out
of the workspace). On top of that this module never lists nor serves Blockyard's own
state: `.blockyard/`, key files, database files, `.env` and `.git` (HIDDEN below) are
invisible here, as if they did not exist (404).

Python files are compiled before they are written (like a block's code): a syntax error
is a 422 naming the file and the line, and the file is left untouched."""
from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path
from typing import Any, Literal, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel

from blockyard.ui.server import guarded, state

router = APIRouter(prefix="/ui-api/files", tags=["ui"], include_in_schema=False)

# Names never shown or served (matched against each path component, case-insensitively).
HIDDEN_NAMES = (".blockyard", ".git", "__pycache__", ".env", ".ipynb_checkpoints")
HIDDEN_PATTERNS = ("*.key", "*.pem", "*.db", "*.db-*", "*.sqlite", "*.sqlite3", "*.sqlite-*", "*.sqlite3-*")
MAX_TEXT = 2 * 1024 * 1024  # bigger files are downloaded, not opened in the editor
MAX_UPLOAD = 50 * 1024 * 1024
LANGUAGES = {".py": "python", ".sql": "sql", ".yaml": "yaml", ".yml": "yaml", ".md": "markdown", ".json": "json",
             ".txt": "text", ".csv": "text", ".toml": "text", ".cfg": "text", ".ini": "text", ".r": "r", ".sh": "shell"}


def hidden(name: str) -> bool:
    low = name.lower()
    return low in HIDDEN_NAMES or any(fnmatch.fnmatchcase(low, p) for p in HIDDEN_PATTERNS)


def _errors():
    from blockyard.server import errors

    return errors


def resolve(st: Any, rel: str | None, what: str = "path", *, allow_root: bool = False) -> tuple[Path, str]:
    """(absolute path, normalised relative path) for a workspace-relative `rel`, guarded."""
    from blockyard.server.deps import check_name, inside

    rel = (rel or "").strip().rstrip("/")
    if not rel:
        if allow_root:
            return st.root, ""
        raise _errors().BadRequest(f"{what} is empty: give a path relative to the workspace")
    check_name(rel, what, allow_slash=True)
    if any(hidden(part) for part in rel.split("/")):
        raise _errors().NotFound(f"no file or folder {rel!r} in the workspace")
    path = st.root / rel
    resolved = inside(st, path, f"{what} {rel!r}")
    # a symlink inside the workspace pointing at hidden state is hidden too
    real_rel = resolved.relative_to(st.root).as_posix() if resolved != st.root else ""
    if any(hidden(part) for part in real_rel.split("/") if part):
        raise _errors().NotFound(f"no file or folder {rel!r} in the workspace")
    return path, rel


def _must_exist(path: Path, rel: str) -> None:
    if not path.exists():
        raise _errors().NotFound(f"no file or folder {rel!r} in the workspace")


def _entry(entry: os.DirEntry, parent: str) -> dict | None:
    try:
        is_dir = entry.is_dir()
        info = entry.stat()
    except OSError:  # a dangling symlink
        return None
    return {"name": entry.name, "path": f"{parent}/{entry.name}" if parent else entry.name,
            "type": "dir" if is_dir else "file", "size": None if is_dir else info.st_size, "mtime": info.st_mtime}


@router.get("/list", dependencies=guarded())
def list_folder(request: Request, path: Optional[str] = Query(None, max_length=1000)):
    """One folder's entries (folders first, then files, by name); hidden state is left out."""
    st = state(request)
    folder, rel = resolve(st, path, "folder", allow_root=True)
    _must_exist(folder, rel)
    if not folder.is_dir():
        raise _errors().BadRequest(f"{rel!r} is a file, not a folder")
    entries = []
    with os.scandir(folder) as it:
        for e in it:
            if hidden(e.name):
                continue
            item = _entry(e, rel)
            if item is not None:
                entries.append(item)
    entries.sort(key=lambda x: (x["type"] != "dir", x["name"].lower()))
    return {"path": rel, "entries": entries}


def _language(path: Path) -> str:
    return LANGUAGES.get(path.suffix.lower(), "text")


@router.get("/content", dependencies=guarded())
def read_file(request: Request, path: str = Query(..., max_length=1000)):
    st = state(request)
    target, rel = resolve(st, path, "file")
    _must_exist(target, rel)
    if target.is_dir():
        raise _errors().BadRequest(f"{rel!r} is a folder, not a file")
    size = target.stat().st_size
    if size > MAX_TEXT:
        raise _errors().ApiError(f"{rel} is {size // 1024} KB: too big for the editor, download it instead", status_code=413)
    data = target.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _errors().ApiError(f"{rel} is not a UTF-8 text file: download it instead", status_code=415) from None
    return {"path": rel, "content": text, "language": _language(target), "size": size}


class WriteIn(BaseModel):
    path: str
    content: str


def _check_python(target: Path, rel: str, content: str) -> None:
    if target.suffix.lower() == ".py":
        from blockyard.project.pipeline import check_code

        check_code(content, rel)  # ProjectError (422) with file and line; nothing written


@router.put("/content", dependencies=guarded())
def write_file(body: WriteIn, request: Request):
    """Replace a text file (creates it if missing; its folder must exist)."""
    from blockyard.project.yaml_io import write_text_atomic

    st = state(request)
    target, rel = resolve(st, body.path, "file")
    if target.is_dir():
        raise _errors().BadRequest(f"{rel!r} is a folder, not a file")
    if not target.parent.is_dir():
        raise _errors().NotFound(f"folder {str(Path(rel).parent)!r} does not exist: create it first")
    _check_python(target, rel, body.content)
    write_text_atomic(target, body.content)
    return {"path": rel, "size": target.stat().st_size, "language": _language(target)}


class CreateIn(BaseModel):
    path: str
    type: Literal["file", "folder"] = "file"
    content: str = ""


@router.post("", status_code=201, dependencies=guarded())
def create(body: CreateIn, request: Request):
    """A new empty (or given) file, or a folder; parents are created; 409 if it exists."""
    st = state(request)
    target, rel = resolve(st, body.path, body.type)
    if target.exists() or target.is_symlink():
        raise _errors().ApiError(f"{rel!r} already exists", status_code=409)
    if body.type == "folder":
        target.mkdir(parents=True)
        return {"path": rel, "type": "dir"}
    _check_python(target, rel, body.content)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body.content, encoding="utf-8")
    return {"path": rel, "type": "file", "size": target.stat().st_size}


class MoveIn(BaseModel):
    path: str
    to: str


@router.post("/move", dependencies=guarded())
def move(body: MoveIn, request: Request):
    """Rename or move a file or folder (to a path that does not exist yet)."""
    st = state(request)
    src, rel = resolve(st, body.path, "path")
    dest, dest_rel = resolve(st, body.to, "destination")
    _must_exist(src, rel)
    if dest.exists() or dest.is_symlink():
        raise _errors().ApiError(f"{dest_rel!r} already exists", status_code=409)
    if src.is_dir() and (dest_rel + "/").startswith(rel + "/"):
        raise _errors().BadRequest(f"cannot move folder {rel!r} into itself")
    if not dest.parent.is_dir():
        raise _errors().NotFound(f"folder {str(Path(dest_rel).parent)!r} does not exist")
    src.rename(dest)
    return {"path": dest_rel, "from": rel}


@router.delete("", dependencies=guarded())
def delete(request: Request, path: str = Query(..., max_length=1000)):
    """Delete a file, or a folder with everything in it (never the workspace root)."""
    st = state(request)
    target, rel = resolve(st, path, "path")
    _must_exist(target, rel)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    else:
        target.unlink()
    return {"deleted": rel}


@router.put("/upload", status_code=201, dependencies=guarded())
async def upload(request: Request, path: str = Query(..., max_length=1000),
                 overwrite: bool = Query(False)):
    """The request body is the file's bytes (the browser sends the File object as is)."""
    st = state(request)
    target, rel = resolve(st, path, "file")
    if target.is_dir():
        raise _errors().BadRequest(f"{rel!r} is a folder")
    if target.exists() and not overwrite:
        raise _errors().ApiError(f"{rel!r} already exists", status_code=409)
    if not target.parent.is_dir():
        raise _errors().NotFound(f"folder {str(Path(rel).parent)!r} does not exist")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_UPLOAD:
            raise _errors().ApiError(f"upload too big (over {MAX_UPLOAD // (1024 * 1024)} MB)", status_code=413)
    if target.suffix.lower() == ".py":
        try:
            _check_python(target, rel, bytes(data).decode("utf-8"))
        except UnicodeDecodeError:
            raise _errors().BadRequest(f"{rel} is not UTF-8 text") from None
    tmp = target.with_name(f".{target.name}.upload")
    tmp.write_bytes(bytes(data))
    os.replace(tmp, target)
    return {"path": rel, "size": len(data)}


@router.get("/download", dependencies=guarded())
def download(request: Request, path: str = Query(..., max_length=1000)):
    st = state(request)
    target, rel = resolve(st, path, "file")
    _must_exist(target, rel)
    if target.is_dir():
        raise _errors().BadRequest(f"{rel!r} is a folder: download its files one by one")
    return FileResponse(target, filename=target.name, media_type="application/octet-stream")
