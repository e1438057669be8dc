"""The inline add buttons' templates: every choice compiles, values stay string literals,
and the SQL loader/exporter templates really run against PostgreSQL through io_config.yaml."""
from __future__ import annotations

import pytest

from blockyard.ui.block_templates import CHOICES, render


def test_every_template_compiles_and_quotes_values():
    for block_type, opts in CHOICES.items():
        for template, _label, params in opts:
            code = render(block_type, template, {p: "x'); import os #" for p in params})
            if block_type != "markdown":
                compile(code, f"{block_type}-{template}", "exec")
    code = render("data_loader", "file", {"path": "data/titanic.csv"})
    assert "_read('data/titanic.csv')" in code and "@data_loader" in code
    with pytest.raises(ValueError, match="no template 'sql' for block type 'transformer'"):
        render("transformer", "sql")
    with pytest.raises(ValueError, match="needs file path"):
        render("data_loader", "file", {"path": " "})


def test_sql_templates_run_against_postgres(pg_url, tmp_path, monkeypatch):
    import pandas as pd
    import sqlalchemy as sa

    url = sa.engine.make_url(pg_url)
    (tmp_path / "io_config.yaml").write_text(
        "default:\n"
        f"  POSTGRES_USER: {url.username or 'postgres'}\n"
        f"  POSTGRES_HOST: {url.host}\n  POSTGRES_PORT: {url.port or 5432}\n  POSTGRES_DBNAME: {url.database}\n")
    monkeypatch.setenv("BLOCKYARD_WORKSPACE", str(tmp_path))
    from blockyard.compat import shim

    shim.install()
    ns: dict = {}
    exec(compile(render("data_exporter", "sql", {"table": "ui_template_rows"}), "exporter", "exec"), ns)
    ns["export_to_postgres"](pd.DataFrame({"a": [1, 2, 3]}))
    ns = {}
    exec(compile(render("data_loader", "sql", {"query": "SELECT sum(a) AS total FROM ui_template_rows"}), "loader", "exec"), ns)
    df = ns["load_from_postgres"]()
    assert int(df["total"][0]) == 6
