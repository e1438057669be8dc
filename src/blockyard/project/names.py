"""Block types, their folders, file extensions and name rules."""
from __future__ import annotations

import re

from blockyard.errors import ProjectError

# Block type -> folder (inside a project) holding its code.
BLOCK_TYPE_DIRS: dict[str, str] = {
    "data_loader": "data_loaders",
    "transformer": "transformers",
    "data_exporter": "data_exporters",
    "custom": "custom",
    "sensor": "sensors",
    "chart": "charts",
    "callback": "callbacks",
    "conditional": "conditionals",
    "markdown": "markdowns",
    "scratchpad": "scratchpads",
}

# Types whose file must exist for a run (validation checks them).
EXECUTABLE_TYPES = frozenset(
    {"data_loader", "transformer", "data_exporter", "custom", "sensor", "callback", "conditional"}
)

# Which list of the pipeline metadata a new block of this type goes to.
GROUP_FOR_TYPE = {"callback": "callbacks", "conditional": "conditionals", "chart": "widgets"}
GROUPS = ("blocks", "callbacks", "conditionals", "widgets")

LANGUAGE_EXTENSIONS = {
    "python": ".py",
    "sql": ".sql",
    "r": ".r",
    "yaml": ".yaml",
    "markdown": ".md",
}

_UUID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_/-]*\Z")
_FLAT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")

UUID_RULE = (
    "letters, digits, '_', '-' and '/' (for subfolders); it must start with a letter, "
    "digit or '_' and may not contain '..', ':', '//' or end with '/'"
)
FLAT_RULE = "letters, digits, '_' and '-'; it must start with a letter, digit or '_'"

# A name is a file or folder name (at most 255 bytes on common file systems, with room
# for the extension) and a database column of 255 characters.
MAX_NAME_LENGTH = 200
MAX_UUID_LENGTH = 255


def _shown(name: str) -> str:
    return repr(name if len(name) <= 40 else name[:40] + "...")


def check_length(name: str, what: str) -> str:
    """ProjectError when `name` (or one of its '/' parts) is too long to be a file name."""
    longest = max((len(part) for part in name.split("/")), default=0)
    if len(name) > MAX_UUID_LENGTH or longest > MAX_NAME_LENGTH:
        raise ProjectError(
            f"invalid {what} {_shown(name)}: too long ({len(name)} characters; at most "
            f"{MAX_NAME_LENGTH} per name or '/' part and {MAX_UUID_LENGTH} in all)",
            hint="use a shorter name",
        )
    return name


def extension_for(block_type: str, language: str | None) -> str:
    if block_type == "markdown":
        return ".md"
    return LANGUAGE_EXTENSIONS.get((language or "python").lower(), ".py")


def is_safe_relative(uuid: str) -> bool:
    """True if `uuid` used as a relative path cannot leave its folder."""
    if not uuid or uuid.startswith(("/", "\\")) or ":" in uuid or "\\" in uuid:
        return False
    return all(part not in ("", ".", "..") for part in uuid.split("/"))


def check_block_uuid(uuid: object, what: str = "block uuid") -> str:
    """Return `uuid` if it is a valid block uuid, else raise ProjectError saying what is allowed."""
    if not isinstance(uuid, str) or not _UUID_RE.match(uuid) or not is_safe_relative(uuid):
        raise ProjectError(
            f"invalid {what} {_shown(uuid) if isinstance(uuid, str) else repr(uuid)}: use {UUID_RULE}",
            hint="e.g. 'load_data' or 'hyperparameter_tuning/sklearn'",
        )
    return check_length(uuid, what)


def check_flat_name(name: object, what: str) -> str:
    """Project names and pipeline uuids: one folder level, no '/'."""
    if not isinstance(name, str) or not _FLAT_RE.match(name):
        shown = _shown(name) if isinstance(name, str) else repr(name)
        raise ProjectError(f"invalid {what} {shown}: use {FLAT_RULE}", hint="e.g. 'data_preparation'")
    return check_length(name, what)


def check_block_type(block_type: object) -> str:
    if block_type not in BLOCK_TYPE_DIRS:
        raise ProjectError(
            f"unknown block type {block_type!r}",
            hint="use one of: " + ", ".join(BLOCK_TYPE_DIRS),
        )
    return block_type  # type: ignore[return-value]
