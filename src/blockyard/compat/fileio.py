"""`mage_ai.io.file`: `FileIO` reads and writes data frames as csv, parquet or json."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["FileIO", "FORMATS"]

FORMATS = ("csv", "parquet", "json")
_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json"}
_COMPRESSIONS = (".gz", ".bz2", ".zip", ".xz", ".zst")


def _format_for(filepath: str | os.PathLike, format: Any) -> str:
    if format is not None:
        fmt = str(getattr(format, "value", format)).lower().lstrip(".")
        if fmt in FORMATS:
            return fmt
        raise ValueError(
            f"FileIO cannot handle format {fmt!r}; supported: {', '.join(FORMATS)}"
        )
    name = os.fspath(filepath).lower()
    for compression in _COMPRESSIONS:
        if name.endswith(compression):
            name = name[: -len(compression)]
            break
    fmt = _EXTENSIONS.get(os.path.splitext(name)[1])
    if fmt is None:
        raise ValueError(
            f"FileIO cannot tell the format of '{os.fspath(filepath)}' from its extension; "
            f"pass format= one of {', '.join(FORMATS)}"
        )
    return fmt


def _is_local(filepath: str | os.PathLike) -> bool:
    return "://" not in os.fspath(filepath)


class FileIO:
    """Mage's file loader/exporter: `FileIO().load(path)`, `FileIO().export(df, path)`.

    The format comes from `format=` ("csv", "parquet", "json") or the file extension
    (compressed `.csv.gz` and similar included). Extra keyword arguments go to the
    pandas reader or writer.
    """

    def __init__(self, verbose: bool = False, **_: Any) -> None:
        self.verbose = verbose

    def load(
        self,
        filepath: str | os.PathLike,
        format: Any = None,
        limit: int | None = None,
        **kwargs: Any,
    ):
        import pandas as pd

        fmt = _format_for(filepath, format)
        if fmt == "csv":
            if limit is not None:
                kwargs.setdefault("nrows", limit)
            df = pd.read_csv(filepath, **kwargs)
        elif fmt == "parquet":
            df = pd.read_parquet(filepath, **kwargs)
        else:
            df = pd.read_json(filepath, **kwargs)
        if limit is not None and len(df) > limit:
            df = df.head(limit)
        if self.verbose:
            print(f"Loaded {len(df)} rows from '{os.fspath(filepath)}'")
        return df

    def export(
        self,
        df: Any,
        filepath: str | os.PathLike,
        format: Any = None,
        **kwargs: Any,
    ) -> None:
        import pandas as pd

        fmt = _format_for(filepath, format)
        if not isinstance(df, pd.DataFrame):
            to_pandas = getattr(df, "to_pandas", None)
            if callable(to_pandas):
                df = to_pandas()
            elif isinstance(df, pd.Series):
                df = df.to_frame()
            else:
                df = pd.DataFrame(df)
        if _is_local(filepath):
            Path(filepath).expanduser().parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            kwargs.setdefault("index", False)
            df.to_csv(filepath, **kwargs)
        elif fmt == "parquet":
            df.to_parquet(filepath, **kwargs)
        else:
            kwargs.setdefault("orient", "records")
            df.to_json(filepath, **kwargs)
        if self.verbose:
            print(f"Exported {len(df)} rows to '{os.fspath(filepath)}'")
