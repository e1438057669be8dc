"""Workspace and Project: the folders, settings.yaml and each project's metadata.yaml."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from blockyard import settings
from blockyard.errors import PipelineNotFound, ProjectError
from blockyard.project.names import BLOCK_TYPE_DIRS, check_flat_name, is_safe_relative
from blockyard.project import parse_cache
from blockyard.project.pipeline import PipelineSpec
from blockyard.project.yaml_io import (
    YamlDoc, mapping_doc, parse_yaml, read_mapping, read_text, set_key, type_name, write_yaml,
)

SETTINGS_FILE = "settings.yaml"
METADATA_FILE = "metadata.yaml"
GLOBAL_DATA_PRODUCTS_FILE = "global_data_products.yaml"


class Project:
    """One Mage project: a folder with metadata.yaml, pipelines/ and block folders."""

    def __init__(self, name: str, path: Path, workspace: "Workspace") -> None:
        self.name = name
        self.path = Path(path)
        self.workspace = workspace
        self._metadata: dict | None = None

    @property
    def metadata_path(self) -> Path:
        return self.path / METADATA_FILE

    @property
    def pipelines_dir(self) -> Path:
        return self.path / "pipelines"

    @property
    def exists(self) -> bool:
        return self.path.is_dir()

    @property
    def metadata(self) -> dict:
        """metadata.yaml as a dict ({} if the project has none); every key kept."""
        if self._metadata is None:
            self._metadata = read_mapping(self.metadata_path, "project metadata", missing_ok=True).data
        return self._metadata

    def block_dir(self, block_type: str) -> Path:
        return self.path / BLOCK_TYPE_DIRS[block_type]

    def pipeline_uuids(self) -> list[str]:
        if not self.pipelines_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.pipelines_dir.iterdir() if p.is_dir() and (p / METADATA_FILE).is_file()
        )

    def pipeline(self, uuid: str) -> PipelineSpec:
        ok = isinstance(uuid, str) and "/" not in uuid and is_safe_relative(uuid)
        path = self.pipelines_dir / uuid / METADATA_FILE if ok else None
        if path is None or not path.is_file():
            available = self.pipeline_uuids()
            raise PipelineNotFound(
                f"no pipeline {uuid!r} in project '{self.name}'; available: "
                + (", ".join(available) or "none"),
                file=self.pipelines_dir,
                pipeline=str(uuid),
            )
        return PipelineSpec.load(path, self)

    def pipelines(self) -> list[PipelineSpec]:
        return [self.pipeline(uuid) for uuid in self.pipeline_uuids()]

    def global_data_products(self) -> dict[str, dict]:
        """`global_data_products.yaml` entries as raw dicts ({} if there is no such file)."""
        doc = read_mapping(self.path / GLOBAL_DATA_PRODUCTS_FILE, "global data products file", missing_ok=True)
        for uuid, entry in doc.data.items():
            if entry is None:
                doc.data[uuid] = {}
            elif not isinstance(entry, dict):
                raise ProjectError(
                    f"global data product '{uuid}' must be a mapping (object_type, object_uuid, ...), "
                    f"not a {type_name(entry)}",
                    file=doc.path,
                    line=doc.line_of(uuid),
                )
        return doc.data

    def set_metadata(self, values: dict[str, Any], *, replace: bool = False) -> dict:
        """Update (or with `replace=True`, replace) metadata.yaml; other keys and their order are kept."""
        if not isinstance(values, dict):
            raise ProjectError(f"metadata must be a mapping, not a {type_name(values)}", file=self.metadata_path)
        if replace:
            data = copy.deepcopy(values)
        else:
            data = read_mapping(self.metadata_path, "project metadata", missing_ok=True).data
            for key, value in values.items():
                set_key(data, key, copy.deepcopy(value))
        write_yaml(self.metadata_path, data)
        self._metadata = data
        return data

    def __repr__(self) -> str:
        return f"Project(name={self.name!r}, path={str(self.path)!r})"


class Workspace:
    """A folder holding one project (metadata.yaml) or several (settings.yaml `projects:`)."""

    def __init__(self, root: Path, *, multi_project: bool, settings_data: dict | None = None,
                 project_paths: dict[str, Path] | None = None) -> None:
        self.root = Path(root)
        self.name = self.root.name
        self.multi_project = multi_project
        self.settings = settings_data if settings_data is not None else {}
        self._project_paths = project_paths if project_paths is not None else {}
        self._projects: dict[str, Project] = {}

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> "Workspace":
        root = Path(path).expanduser()
        if root.is_file() and root.name in (SETTINGS_FILE, METADATA_FILE):
            root = root.parent
        root = root.resolve()
        if not root.is_dir():
            raise ProjectError("workspace folder not found", file=root, hint="create one with `blockyard init <folder>`")
        settings_path = root / SETTINGS_FILE
        has_metadata = (root / METADATA_FILE).is_file()
        if settings_path.is_file():
            text = read_text(settings_path)
            kept = parse_cache.load(root, settings_path, text)
            # a kept parse is of this exact text and passed the checks below: no lines needed
            doc = YamlDoc(settings_path, kept[0], None) if kept else mapping_doc(
                parse_yaml(text, settings_path), "workspace settings")
            projects = doc.data.get("projects")
            paths = _parse_projects(projects, root, doc) if projects or not has_metadata else None
            if kept is None:
                parse_cache.save(root, settings_path, text, doc.data, {})
            if paths is not None:
                return cls(root, multi_project=True, settings_data=doc.data, project_paths=paths)
        if has_metadata:
            return cls(root, multi_project=False, project_paths={root.name: root})
        raise ProjectError(
            f"not a workspace: no {SETTINGS_FILE} or {METADATA_FILE}",
            file=root,
            hint="create one with `blockyard init <folder>` or point BLOCKYARD_WORKSPACE at one",
        )

    @classmethod
    def discover(cls, start: str | os.PathLike | None = None) -> "Workspace":
        """BLOCKYARD_WORKSPACE if set, else the nearest folder up from `start` (cwd) with
        settings.yaml or a project's metadata.yaml. A project folder listed in an
        enclosing settings.yaml opens as that multi-project workspace."""
        env = os.environ.get(settings.ENV_WORKSPACE)
        if env:
            return cls.open(env)
        here = Path(start or os.getcwd()).resolve()
        candidate: Path | None = None
        for folder in (here, *here.parents):
            if (folder / SETTINGS_FILE).is_file():
                if candidate is None:
                    return cls.open(folder)
                try:
                    ws = cls.open(folder)
                except ProjectError:
                    continue
                if ws.multi_project and any(p == candidate for p in ws._project_paths.values()):
                    return ws
            elif candidate is None and (folder / METADATA_FILE).is_file() and folder.parent.name != "pipelines":
                candidate = folder
        if candidate is not None:
            return cls.open(candidate)
        raise ProjectError(
            f"no workspace found in {here} or its parents",
            hint=f"set {settings.ENV_WORKSPACE} or run `blockyard init <folder>`",
        )

    # -- contents -------------------------------------------------------------------------
    @property
    def settings_path(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def data_dir(self) -> Path:
        return settings.data_dir_for(self.root)

    def project_names(self) -> list[str]:
        return list(self._project_paths)

    def projects(self) -> list[Project]:
        return [self.project(name) for name in self._project_paths]

    def project(self, name: str) -> Project:
        if name not in self._project_paths:
            raise ProjectError(
                f"no project {name!r} in workspace '{self.name}'; projects: "
                + (", ".join(self._project_paths) or "none"),
                file=self.settings_path if self.multi_project else self.root,
            )
        if name not in self._projects:
            self._projects[name] = Project(name, self._project_paths[name], self)
        return self._projects[name]

    def pipeline_refs(self) -> list[str]:
        """Every pipeline as 'project/pipeline'."""
        return [f"{p.name}/{uuid}" for p in self.projects() for uuid in p.pipeline_uuids()]

    def find_pipeline(self, ref: str) -> PipelineSpec:
        """'project/pipeline', or a bare 'pipeline' that exists in exactly one project."""
        if not isinstance(ref, str) or not ref.strip():
            raise PipelineNotFound(f"empty pipeline name; available: {', '.join(self.pipeline_refs()) or 'none'}")
        ref = ref.strip()
        if "/" in ref:
            project_name, uuid = ref.split("/", 1)
            if project_name not in self._project_paths:
                raise PipelineNotFound(
                    f"no project {project_name!r} for pipeline {ref!r}; available pipelines: "
                    + (", ".join(self.pipeline_refs()) or "none"),
                    pipeline=ref,
                )
            project = self.project(project_name)
            if uuid not in project.pipeline_uuids():
                raise PipelineNotFound(
                    f"no pipeline {uuid!r} in project {project_name!r}; available pipelines: "
                    + (", ".join(self.pipeline_refs()) or "none"),
                    pipeline=ref,
                )
            return project.pipeline(uuid)
        matches = [p for p in self.projects() if ref in p.pipeline_uuids()]
        if len(matches) == 1:
            return matches[0].pipeline(ref)
        if not matches:
            raise PipelineNotFound(
                f"no pipeline {ref!r}; available pipelines: " + (", ".join(self.pipeline_refs()) or "none"),
                pipeline=ref,
                hint="use 'project/pipeline' or a pipeline name from the list",
            )
        candidates = ", ".join(f"{p.name}/{ref}" for p in matches)
        raise PipelineNotFound(
            f"pipeline name {ref!r} is ambiguous; candidates: {candidates}",
            pipeline=ref,
            hint="name it as 'project/pipeline'",
        )

    # -- editing --------------------------------------------------------------------------
    def add_project(self, name: str, path: str | None = None) -> Project:
        """Register a project in settings.yaml (the folder is not created; see scaffold.new_project)."""
        check_flat_name(name, "project name")
        if not self.multi_project:
            raise ProjectError(
                f"'{self.name}' is a single-project workspace (metadata.yaml at its root); cannot add projects",
                file=self.root / METADATA_FILE,
                hint="create a multi-project workspace with `blockyard init` and move the project into it",
            )
        if name in self._project_paths:
            raise ProjectError(f"project {name!r} is already registered", file=self.settings_path)
        rel = path if path is not None else name
        project_path = _project_path(self.root, name, rel, file=self.settings_path, line=None)
        if project_path in self._project_paths.values():
            raise ProjectError(f"folder {rel!r} already belongs to another project", file=self.settings_path)
        data = read_mapping(self.settings_path, "workspace settings", missing_ok=True).data
        entries = data.get("projects")
        if isinstance(entries, list):
            entries.append(name if path is None else {"name": name, "path": path})
        else:
            entries = dict(entries or {})
            entries[name] = {} if path is None else {"path": path}
        set_key(data, "projects", entries)
        write_yaml(self.settings_path, data)
        self.settings = data
        self._project_paths[name] = project_path
        return self.project(name)

    def __repr__(self) -> str:
        return f"Workspace(root={str(self.root)!r}, projects={self.project_names()!r})"


def _project_path(root: Path, name: str, rel: Any, *, file: Path, line: int | None) -> Path:
    if not isinstance(rel, str) or not is_safe_relative(rel.rstrip("/")):
        raise ProjectError(
            f"project {name!r}: path {rel!r} must be a folder inside the workspace (relative, no '..')",
            file=file,
            line=line,
        )
    return root / rel.rstrip("/")


def _parse_projects(projects: Any, root: Path, doc) -> dict[str, Path]:
    """settings.yaml `projects:` as a mapping (name: {path: ...}) or a list (names or {name, path})."""
    file = doc.path
    out: dict[str, Path] = {}

    def add(name: Any, options: Any, *keys: Any) -> None:
        line = doc.line_of("projects", *keys)
        if not isinstance(name, str) or not name or "/" in name or not is_safe_relative(name):
            raise ProjectError(f"invalid project name {name!r} in 'projects'", file=file, line=line)
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ProjectError(
                f"project {name!r}: settings must be a mapping (e.g. {{}} or {{path: folder}}), "
                f"not a {type_name(options)}",
                file=file,
                line=line,
            )
        if name in out:
            raise ProjectError(f"project {name!r} is listed twice", file=file, line=line)
        out[name] = _project_path(root, name, options.get("path") or name, file=file, line=line)

    if projects is None:
        return out
    if isinstance(projects, dict):
        for name, options in projects.items():
            add(name, options, name)
    elif isinstance(projects, list):
        for i, item in enumerate(projects):
            if isinstance(item, str):
                add(item, {}, i)
            elif isinstance(item, dict) and ("name" in item or "uuid" in item):
                add(item.get("name") or item.get("uuid"), item, i)
            elif isinstance(item, dict) and len(item) == 1:
                (name, options), = item.items()
                add(name, options, i)
            else:
                raise ProjectError(
                    f"entry {i + 1} of 'projects' must be a name or a mapping with 'name' (and optional 'path')",
                    file=file,
                    line=doc.line_of("projects", i),
                )
    else:
        raise ProjectError(
            f"'projects' must be a mapping or a list of project names, not a {type_name(projects)}",
            file=file,
            line=doc.line_of("projects"),
        )
    return out
