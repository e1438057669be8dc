"""From an HTTP body to the rows a DictVectorizer takes, with errors that name the field.

Payloads (MLflow's scoring protocol, JSON): ``{"dataframe_records": [{...}, ...]}``,
``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}``,
``{"inputs": [{...}, ...]}`` or ``{"inputs": {"col": [...], ...}}`` (``instances`` is
accepted as a synonym of ``inputs``); ``text/csv`` bodies too.

The feature transform is the workspace's own (the course's ``combine_features`` in
``<workspace>/utils/data_preparation/feature_engineering.py``, adding ``PU_DO``); it
is imported, never copied, so serving and training cannot drift apart.
"""
from __future__ import annotations

import importlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Optional

_log = logging.getLogger("blockyard.serving")

DEFAULT_TRANSFORM = "{package}.utils.data_preparation.feature_engineering:combine_features"
PAYLOAD_KEYS = ("dataframe_records", "dataframe_split", "inputs", "instances")

Transform = Callable[[list], list]


class RequestError(Exception):
    """A bad request: answered with `status` and a message naming the field."""

    def __init__(self, message: str, *, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field

    def to_dict(self) -> dict:
        out = {"error_code": "BAD_REQUEST" if self.status == 400 else "INVALID_PARAMETER_VALUE",
               "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


# ------------------------------------------------------------------------ payloads


def parse_body(body: bytes, content_type: str | None = None) -> list[dict]:
    """The records of a scoring request (a non-empty list of dicts)."""
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    if ctype == "text/csv":
        return _csv_records(body)
    if not body:
        raise RequestError("empty body: send a JSON object with one of " + ", ".join(PAYLOAD_KEYS), status=400)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(f"the body is not valid JSON: {exc}", status=400) from None
    return records_from_payload(payload)


def records_from_payload(payload: Any, *, where: str = "body") -> list[dict]:
    if not isinstance(payload, dict):
        raise RequestError(f"{where} must be a JSON object with one of {', '.join(PAYLOAD_KEYS)}, "
                           f"got {_type_name(payload)}", status=400)
    keys = [k for k in PAYLOAD_KEYS if k in payload]
    if len(keys) != 1:
        raise RequestError(
            f"{where} needs exactly one of {', '.join(PAYLOAD_KEYS)}"
            + (f" (got {', '.join(keys)})" if keys else f" (got keys: {', '.join(map(str, payload)) or 'none'})"),
            field=keys[1] if len(keys) > 1 else None,
        )
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        return _split_records(value)
    if key in ("inputs", "instances") and isinstance(value, dict):
        return _columns_records(value, key)
    return check_records(value, key)


def check_records(value: Any, field: str) -> list[dict]:
    if not isinstance(value, list):
        raise RequestError(f"'{field}' must be a list of records (objects), got {_type_name(value)}", field=field)
    if not value:
        raise RequestError(f"'{field}' is an empty list: send at least one record", field=field)
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            raise RequestError(f"'{field}[{i}]' must be an object of feature values, got {_type_name(row)}",
                               field=f"{field}[{i}]")
    return value


def _split_records(value: Any) -> list[dict]:
    if not isinstance(value, dict):
        raise RequestError(f"'dataframe_split' must be an object with 'columns' and 'data', got {_type_name(value)}",
                           field="dataframe_split")
    columns, data = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError("'dataframe_split.columns' must be a list of column names", field="dataframe_split.columns")
    if not isinstance(data, list) or not data:
        raise RequestError("'dataframe_split.data' must be a non-empty list of rows", field="dataframe_split.data")
    out = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise RequestError(f"'dataframe_split.data[{i}]' must be a list of {len(columns)} values (one per column)",
                               field=f"dataframe_split.data[{i}]")
        out.append(dict(zip(columns, row)))
    return out


def _columns_records(value: dict, key: str) -> list[dict]:
    lengths = {k: len(v) for k, v in value.items() if isinstance(v, list)}
    bad = [k for k in value if k not in lengths]
    if bad:
        raise RequestError(f"'{key}.{bad[0]}' must be a list of values (column form)", field=f"{key}.{bad[0]}")
    if not lengths or len(set(lengths.values())) != 1 or not next(iter(lengths.values())):
        raise RequestError(f"'{key}' columns must be non-empty lists of the same length", field=key)
    n = next(iter(lengths.values()))
    return [{k: value[k][i] for k in value} for i in range(n)]


def _csv_records(body: bytes) -> list[dict]:
    import io

    import pandas as pd

    try:
        df = pd.read_csv(io.BytesIO(body))
    except Exception as exc:  # noqa: BLE001 - any parse problem is the client's
        raise RequestError(f"the body is not valid CSV: {exc}", status=400) from None
    if df.empty:
        raise RequestError("the CSV body has no rows", field="body")
    return df.to_dict("records")


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), type(value).__name__)


# ----------------------------------------------------------------------- transform


def resolve_transform(workspace_root: Path, name: str | None = None) -> tuple[Optional[Transform], str]:
    """The record transform and its dotted name ('' when none is used).

    `name` ("module:function") must import; without it the course's default
    ("<workspace folder>.utils.data_preparation.feature_engineering:combine_features")
    is used when the workspace has it, else records go to the DictVectorizer as sent."""
    from blockyard.engine.loader import ensure_import_paths

    root = Path(workspace_root).resolve()
    ensure_import_paths(root.parent, root)  # as the engine does for blocks
    explicit = bool(name)
    dotted = name or DEFAULT_TRANSFORM.format(package=root.name)
    module_name, _, func_name = dotted.partition(":") if ":" in dotted else dotted.rpartition(".")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        if explicit:
            raise ValueError(f"feature transform {dotted!r} cannot be imported: {exc}") from None
        _log.info("no feature transform (%s not importable); records go to the DictVectorizer as sent", dotted)
        return None, ""
    return func, dotted


class FeatureSpec:
    """What the DictVectorizer expects: numeric features (numbers) and categorical
    ones (strings, one-hot encoded as 'name=value')."""

    def __init__(self, dv: Any, transform: Optional[Transform] = None) -> None:
        sep = getattr(dv, "separator", "=")
        names = list(dv.feature_names_)
        self.numeric = [n for n in names if sep not in n]
        self.categorical = sorted({n.split(sep, 1)[0] for n in names if sep in n})
        self.features = self.numeric + self.categorical
        self.transform = transform

    def prepare(self, records: list[dict], field: str = "inputs") -> list[dict]:
        """Validated, transformed rows holding only the model's features."""
        for i, row in enumerate(records):
            for key, value in row.items():
                if value is None or isinstance(value, (dict, list)):
                    raise RequestError(f"{field}[{i}].{key}: expected a number or a string, got {_type_name(value)}",
                                       field=f"{field}[{i}].{key}")
        rows = records
        if self.transform is not None:
            try:
                rows = self.transform(records)
            except KeyError as exc:
                missing = exc.args[0] if exc.args else "?"
                index = next((i for i, r in enumerate(records) if missing not in r), 0)
                raise RequestError(f"{field}[{index}]: missing field '{missing}'", field=f"{field}[{index}].{missing}") from None
            except (TypeError, ValueError) as exc:
                raise RequestError(f"{field}: the feature transform rejected the records: {exc}", field=field) from None
        out = []
        for i, row in enumerate(rows):
            clean = {}
            for name in self.numeric:
                if name not in row:
                    raise RequestError(f"{field}[{i}]: missing field '{name}'", field=f"{field}[{i}].{name}")
                value = row[name]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise RequestError(f"{field}[{i}].{name}: expected a finite number, got {value!r}",
                                       field=f"{field}[{i}].{name}")
                clean[name] = value
            for name in self.categorical:
                if name not in row:
                    raise RequestError(f"{field}[{i}]: missing field '{name}'", field=f"{field}[{i}].{name}")
                value = row[name]
                if isinstance(value, bool) or not isinstance(value, (str, int)):
                    raise RequestError(f"{field}[{i}].{name}: expected a string, got {value!r}",
                                       field=f"{field}[{i}].{name}")
                clean[name] = str(value)
            out.append(clean)
        return out
