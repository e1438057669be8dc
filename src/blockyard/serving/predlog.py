"""Every served prediction, logged off the request path to Parquet files.

    <workspace>/.blockyard/predictions/<model>/<YYYY-MM-DD>/<HHMMSS>-<pid>-<seq>.parquet

One row per predicted record: ``ts`` (UTC), ``model``, ``version``, ``request_id``,
``row`` (index in the request), ``inputs`` (the record as JSON), ``prediction``,
``latency_ms`` (the request's server-side time), ``source`` (invocations, batch,
api_trigger, block_run). A request only appends to an in-memory queue; a thread
writes a file every `flush_seconds` (or sooner when `flush_rows` are waiting), so a
slow disk never slows a prediction. `read_predictions` gives them back as a data
frame, inputs expanded to columns, for monitoring (prediction drift on live traffic).
"""
from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_log = logging.getLogger("blockyard.serving")

SCHEMA_FIELDS = ("ts", "model", "version", "request_id", "row", "inputs", "prediction", "latency_ms", "source")


def predictions_dir(workspace_root: Path) -> Path:
    from blockyard.settings import data_dir_for

    return data_dir_for(Path(workspace_root).resolve()) / "predictions"


class PredictionLog:
    def __init__(self, folder: Path, *, flush_seconds: float = 1.0, flush_rows: int = 5000) -> None:
        self.folder = Path(folder)
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._write_lock = threading.Lock()
        self.rows_written = 0
        self.files_written = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="serve-predlog", daemon=True)
        self._thread.start()

    def record(self, model: str, version: str, records: list[dict], predictions: list[float],
               latency_ms: float, source: str) -> int:
        """Queue one request's predictions (cheap: no I/O, no serialisation). Returns its id."""
        request_id = next(self._ids)
        self._queue.append((time.time(), model, version, request_id, records, predictions, latency_ms, source))
        if len(self._queue) >= self.flush_rows:
            self._wake.set()
        return request_id

    def flush(self) -> int:
        """Write what is queued now; the number of rows written."""
        with self._write_lock:
            items = []
            while self._queue:
                items.append(self._queue.popleft())
            if not items:
                return 0
            try:
                return self._write(items)
            except Exception:  # noqa: BLE001 - logging must never take serving down
                self.errors += 1
                _log.exception("could not write %d logged predictions", len(items))
                return 0

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def _write(self, items: list[tuple]) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols: dict[str, list] = {name: [] for name in SCHEMA_FIELDS}
        for ts, model, version, request_id, records, predictions, latency_ms, source in items:
            when = datetime.fromtimestamp(ts, tz=timezone.utc)
            for i, (record, prediction) in enumerate(zip(records, predictions)):
                cols["ts"].append(when)
                cols["model"].append(model)
                cols["version"].append(str(version))
                cols["request_id"].append(request_id)
                cols["row"].append(i)
                cols["inputs"].append(json.dumps(record, default=str))
                cols["prediction"].append(float(prediction))
                cols["latency_ms"].append(float(latency_ms))
                cols["source"].append(source)
        schema = pa.schema([
            ("ts", pa.timestamp("us", tz="UTC")), ("model", pa.string()), ("version", pa.string()),
            ("request_id", pa.int64()), ("row", pa.int32()), ("inputs", pa.string()),
            ("prediction", pa.float64()), ("latency_ms", pa.float64()), ("source", pa.string()),
        ])
        table = pa.Table.from_pydict(cols, schema=schema)
        first = items[0]
        day = datetime.fromtimestamp(first[0], tz=timezone.utc)
        folder = self.folder / _safe(first[1]) / day.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{day.strftime('%H%M%S')}-{os.getpid()}-{next(self._seq):06d}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)  # readers never see half a file
        self.rows_written += table.num_rows
        self.files_written += 1
        return table.num_rows


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def read_predictions(workspace_root: Path, model: str | None = None, *, since: Any = None, until: Any = None,
                     expand: bool = True):
    """The logged predictions as a pandas DataFrame (empty with the schema's columns when
    there are none). `since`/`until`: anything pandas reads as a UTC timestamp.
    `expand`: add one column per input field (for drift reports)."""
    import pandas as pd
    import pyarrow.parquet as pq

    base = predictions_dir(workspace_root)
    folder = base / _safe(model) if model else base
    files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
    if not files:
        return pd.DataFrame(columns=list(SCHEMA_FIELDS))
    df = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    if since is not None:
        df = df[df["ts"] >= _utc(since)]
    if until is not None:
        df = df[df["ts"] < _utc(until)]
    df = df.sort_values(["ts", "request_id", "row"], kind="stable").reset_index(drop=True)
    if expand and len(df):
        inputs = pd.DataFrame([json.loads(s) for s in df["inputs"]], index=df.index)
        inputs = inputs[[c for c in inputs.columns if c not in df.columns]]
        df = pd.concat([df, inputs], axis=1)
    return df


def _utc(value: Any):
    import pandas as pd

    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
