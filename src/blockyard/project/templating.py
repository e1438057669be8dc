"""Template files shipped as package data under `blockyard/project/templates/`."""
from __future__ import annotations

from importlib import resources
from string import Template

from blockyard.errors import ProjectError

# Block types with a template in templates/blocks/.
TEMPLATE_TYPES = (
    "data_loader",
    "transformer",
    "data_exporter",
    "custom",
    "sensor",
    "callback",
    "conditional",
    "chart",
    "markdown",
    "scratchpad",
)


def read_template(*parts: str) -> str:
    node = resources.files("blockyard.project").joinpath("templates", *parts)
    try:
        return node.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"missing template {'/'.join(parts)} in the blockyard package") from None


def render_template(*parts: str, **values: str) -> str:
    return Template(read_template(*parts)).substitute(values)


def block_template(block_type: str, language: str | None = "python") -> str:
    """Starting code for a new block of `block_type`."""
    language = (language or "python").lower()
    if block_type == "markdown":
        return read_template("blocks", "markdown.md")
    if language == "sql":
        return "-- Write the query for this block here.\n"
    if language != "python":
        return ""
    if block_type not in TEMPLATE_TYPES:
        raise ProjectError(f"no template for block type {block_type!r}", hint="use one of: " + ", ".join(TEMPLATE_TYPES))
    return read_template("blocks", f"{block_type}.py")
