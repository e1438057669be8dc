"""/ui-api/runs/{id}/table: one stored output of a block run as a table page with a summary
per column (type, missing, unique, min/max for numbers and dates, the top value otherwise),
for the notebook view under each executed block ("show more rows" asks for the next page).

DataFrames, Series, 2-D numpy arrays and scipy sparse matrices are tables (a sparse
matrix's zeros are 0 in the rows, never null); other outputs are a 415 with what they are."""
from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from blockyard.server.deps import RunId
from blockyard.ui.server import guarded, state

router = APIRouter(prefix="/ui-api/runs", tags=["ui"], include_in_schema=False)

MAX_COLUMNS = 60  # wide sparse matrices: the first columns only (the summary says how many)


def _json(value: Any) -> Any:
    """A cell as JSON: NaN/NaT -> None, numpy scalars -> Python, timestamps -> ISO text."""
    if value is None:
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _column_summary(name: Any, s: Any) -> dict:
    import pandas as pd

    out = {"name": str(name), "dtype": str(s.dtype), "missing": int(s.isna().sum())}
    try:
        out["unique"] = int(s.nunique(dropna=True))
    except TypeError:  # unhashable values (lists, dicts)
        out["unique"] = None
    if pd.api.types.is_bool_dtype(s.dtype):
        pass
    elif pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_datetime64_any_dtype(s.dtype):
        non_null = s.dropna()
        if len(non_null):
            out["min"], out["max"] = _json(non_null.min()), _json(non_null.max())
    if "min" not in out and out.get("unique"):
        try:
            counts = s.value_counts(dropna=True)
            out["top"], out["top_count"] = _json(counts.index[0]), int(counts.iloc[0])
        except (TypeError, IndexError):
            pass
    return out


def table_page(obj: Any, offset: int, limit: int) -> dict:
    """Rows [offset, offset+limit) of `obj` with a summary of every column."""
    import numpy as np
    import pandas as pd

    kind = type(obj).__name__
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        sp = None
    if sp is not None and sp.issparse(obj):
        n_rows, n_cols = obj.shape
        shown = min(n_cols, MAX_COLUMNS)
        chunk = obj.tocsr()[offset:offset + limit, :shown].toarray()  # zeros stay 0
        columns = [{"name": str(i), "dtype": str(obj.dtype)} for i in range(shown)]
        return {"kind": "sparse matrix", "total": n_rows, "n_columns": n_cols, "offset": offset,
                "columns": columns, "rows": [[_json(v) for v in row] for row in chunk],
                "nnz": int(obj.nnz)}
    if isinstance(obj, pd.Series):
        obj = obj.to_frame(name=obj.name if obj.name is not None else "value")
    elif isinstance(obj, np.ndarray) and obj.ndim in (1, 2):
        obj = pd.DataFrame(obj)
    if not isinstance(obj, pd.DataFrame):
        return {"kind": kind, "table": False}
    frame = obj
    columns = [_column_summary(c, frame[c]) for c in frame.columns[:MAX_COLUMNS * 4]]
    page = frame.iloc[offset:offset + limit]
    rows = [[_json(v) for v in row] for row in page.itertuples(index=False, name=None)]
    return {"kind": kind, "total": int(len(frame)), "n_columns": int(frame.shape[1]), "offset": offset,
            "columns": columns, "rows": rows, "index": [_json(i) for i in page.index]}


@router.get("/{run_id}/table", dependencies=guarded())
async def output_table(run_id: RunId, request: Request, block: str = Query(..., max_length=500),
                       index: int = Query(0, ge=0, le=1000), offset: int = Query(0, ge=0),
                       limit: int = Query(20, ge=1, le=500)):
    from blockyard.server.deps import check_name
    from blockyard.server.errors import ApiError, NotFound

    st = state(request)
    check_name(block, "block uuid", allow_slash=True)

    def load() -> dict:
        row = st.db.get_block_run(run_id, block)
        if row is None:
            raise NotFound(f"run {run_id} has no block run {block!r}")
        ref = row.get("output_ref")
        if not ref:
            raise NotFound(f"block {block!r} of run {run_id} has no stored outputs (status {row['status']})")
        src_run, _, node = ref.partition("/")
        manifest = st.session.store.manifest(int(src_run), node)
        if manifest is None or index >= len(manifest.outputs):
            raise NotFound(f"block {block!r} of run {run_id} has no output #{index}")
        obj = st.session.store.load_output(int(src_run), node, index)
        out = table_page(obj, offset, limit)
        if out.get("table") is False:
            raise ApiError(f"output #{index} of {block!r} is a {out['kind']}, not a table", status_code=415)
        out.update(block=block, run_id=run_id, output=index)
        return out

    return await run_in_threadpool(load)
