"""Starting code for a block added from the pipeline page's inline "+ Data loader" (etc.)
buttons: the type's generic template, or a ready loader/exporter for a file path, a URL,
SQL against a PostgreSQL connection of io_config.yaml, or a Python API request.

Values typed in the dialog are inserted with repr(), so they stay Python string literals.
Every template compiles (tests/test_ui_block_templates.py)."""
from __future__ import annotations

from typing import Any

# (id, label, parameters asked in the dialog) per block type.
CHOICES: dict[str, list[tuple[str, str, list[str]]]] = {
    "data_loader": [
        ("generic", "Generic (Python)", []),
        ("file", "From a file path (CSV, Parquet, JSON)", ["path"]),
        ("url", "From a URL (CSV, Parquet, JSON)", ["url"]),
        ("sql", "SQL against a PostgreSQL connection (io_config.yaml)", ["profile", "query"]),
        ("api", "Python API request (JSON)", ["url"]),
    ],
    "transformer": [("generic", "Generic (Python)", [])],
    "data_exporter": [
        ("generic", "Generic (Python)", []),
        ("file", "To a file path (CSV, Parquet, JSON)", ["path"]),
        ("sql", "To a PostgreSQL table (io_config.yaml)", ["profile", "table"]),
    ],
    "custom": [("generic", "Generic (Python)", []), ("api", "Python API request (JSON)", ["url"])],
    "sensor": [("generic", "Generic (Python)", [])],
    "markdown": [("generic", "Markdown text", [])],
}

PARAM_LABELS = {"path": "File path", "url": "URL", "profile": "io_config.yaml profile", "query": "SQL query",
                "table": "Table name"}
DEFAULTS = {"profile": "default", "query": "SELECT 1 AS answer", "table": "exported_rows"}

_HEAD = {
    "data_loader": "if 'data_loader' not in globals():\n    from mage_ai.data_preparation.decorators import data_loader\n",
    "data_exporter": "if 'data_exporter' not in globals():\n    from mage_ai.data_preparation.decorators import data_exporter\n",
    "custom": "if 'custom' not in globals():\n    from mage_ai.data_preparation.decorators import custom\n",
}
_TEST = (
    "if 'test' not in globals():\n    from mage_ai.data_preparation.decorators import test\n"
)
_OUTPUT_TEST = '''

@test
def test_output(output, *args) -> None:
    assert output is not None, 'The output is undefined'
'''

_READ_BY_SUFFIX = '''def _read(source: str) -> pd.DataFrame:
    name = source.lower().split('?')[0]
    if name.endswith('.parquet'):
        return pd.read_parquet(source)
    if name.endswith('.json'):
        return pd.read_json(source)
    return pd.read_csv(source)
'''

_PG_URL = '''def _postgres_url(profile: str):
    """The PostgreSQL connection of io_config.yaml (at the workspace root), as Mage names its keys."""
    config = ConfigFileLoader(profile=profile)
    return sa.engine.URL.create(
        'postgresql+psycopg',
        username=config.get('POSTGRES_USER') or None,
        password=config.get('POSTGRES_PASSWORD') or None,
        host=config.get('POSTGRES_HOST') or 'localhost',
        port=int(config.get('POSTGRES_PORT') or 5432),
        database=config.get('POSTGRES_DBNAME') or None,
    )
'''


def choices() -> dict[str, Any]:
    return {
        t: [{"id": i, "label": label, "params": [{"name": p, "label": PARAM_LABELS[p], "default": DEFAULTS.get(p, "")}
                                                 for p in params]} for i, label, params in opts]
        for t, opts in CHOICES.items()
    }


def render(block_type: str, template: str = "generic", params: dict[str, str] | None = None) -> str:
    """The code of a new block; ValueError names what is unknown or missing."""
    from blockyard.project.templating import block_template

    params = {k: str(v) for k, v in (params or {}).items() if v is not None}
    opts = {i: p for i, _l, p in CHOICES.get(block_type, [("generic", "", [])])}
    if template not in opts:
        raise ValueError(f"no template {template!r} for block type {block_type!r}; choose one of: {', '.join(opts)}")
    for name in opts[template]:
        if not (params.get(name) or DEFAULTS.get(name, "")).strip():
            raise ValueError(f"template {template!r} needs {PARAM_LABELS[name].lower()} ({name!r})")
    if template == "generic":
        return block_template(block_type)
    get = lambda name: (params.get(name) or DEFAULTS.get(name, "")).strip()  # noqa: E731
    if block_type == "data_loader" and template in ("file", "url"):
        source = get("path" if template == "file" else "url")
        return ("import pandas as pd\n\n" + _HEAD["data_loader"] + _TEST + "\n\n" + _READ_BY_SUFFIX +
                f"\n\n@data_loader\ndef load_data(*args, **kwargs) -> pd.DataFrame:\n"
                f"    \"\"\"Rows of {source}.\"\"\"\n    return _read({source!r})\n" + _OUTPUT_TEST)
    if block_type == "data_loader" and template == "sql":
        return ("import pandas as pd\nimport sqlalchemy as sa\nfrom mage_ai.io.config import ConfigFileLoader\n\n"
                + _HEAD["data_loader"] + _TEST + "\nQUERY = " + repr(get("query")) + "\n\n\n" + _PG_URL +
                f"\n\n@data_loader\ndef load_from_postgres(*args, **kwargs) -> pd.DataFrame:\n"
                f"    engine = sa.create_engine(_postgres_url({get('profile')!r}))\n"
                "    try:\n        with engine.connect() as conn:\n            return pd.read_sql(sa.text(QUERY), conn)\n"
                "    finally:\n        engine.dispose()\n" + _OUTPUT_TEST)
    if template == "api":
        deco = "data_loader" if block_type == "data_loader" else "custom"
        return ("import pandas as pd\nimport requests\n\n" + _HEAD[deco] + _TEST +
                f"\n\n@{deco}\ndef load_data_from_api(*args, **kwargs) -> pd.DataFrame:\n"
                f"    response = requests.get({get('url')!r}, timeout=30)\n    response.raise_for_status()\n"
                "    data = response.json()\n"
                "    return pd.json_normalize(data if isinstance(data, list) else [data])\n" + _OUTPUT_TEST)
    if block_type == "data_exporter" and template == "file":
        path = get("path")
        return ("import pandas as pd\n\n" + _HEAD["data_exporter"] +
                f"\n\n@data_exporter\ndef export_data(df: pd.DataFrame, *args, **kwargs) -> None:\n"
                f"    path = {path!r}\n    name = path.lower()\n"
                "    if name.endswith('.parquet'):\n        df.to_parquet(path)\n"
                "    elif name.endswith('.json'):\n        df.to_json(path, orient='records')\n"
                "    else:\n        df.to_csv(path, index=False)\n")
    if block_type == "data_exporter" and template == "sql":
        return ("import pandas as pd\nimport sqlalchemy as sa\nfrom mage_ai.io.config import ConfigFileLoader\n\n"
                + _HEAD["data_exporter"] + "\n\n" + _PG_URL +
                f"\n\n@data_exporter\ndef export_to_postgres(df: pd.DataFrame, *args, **kwargs) -> None:\n"
                f"    engine = sa.create_engine(_postgres_url({get('profile')!r}))\n"
                "    try:\n"
                f"        df.to_sql({get('table')!r}, engine, if_exists='replace', index=False)\n"
                "    finally:\n        engine.dispose()\n")
    raise ValueError(f"no template {template!r} for block type {block_type!r}")  # pragma: no cover
