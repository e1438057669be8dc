"""A hint for a block that failed to download one of the known datasets.

The course's loaders read the NYC taxi and Titanic files from their public URLs; on a
machine without internet (or when the host is down) the block fails with a network
error that says nothing about the local mirror. `network_dataset_hint(exc)` recognises
that case — a network exception whose URL names a dataset `blockyard.datasets` knows —
and says how to read the same bytes from the mirror instead.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterator

_URL = re.compile(r"https?://[^\s'\"<>()]+")
# Exception classes (by name, so requests/urllib3/httpx/aiohttp need not be imported)
# that mean "the network failed", besides the builtin ConnectionError/TimeoutError.
_NETWORK_NAMES = {
    "URLError", "HTTPError", "RemoteDisconnected", "IncompleteRead", "gaierror",
    "ConnectTimeout", "ReadTimeout", "Timeout", "SSLError", "ProxyError", "ConnectError",
    "NewConnectionError", "MaxRetryError", "ProtocolError", "ClientConnectorError",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_network_error(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if any(t.__name__ in _NETWORK_NAMES for t in type(e).__mro__):
            return True
    return False


def _urls(exc: BaseException) -> Iterator[str]:
    """URLs in the messages of the chain and in the string locals of its frames
    (urllib's "Connection refused" does not name the URL; pandas' frames hold it)."""
    for e in _chain(exc):
        yield from _URL.findall(str(e))
        tb = e.__traceback__
        while tb is not None:
            for value in list(tb.tb_frame.f_locals.values()):
                if isinstance(value, str) and len(value) < 2048 and "://" in value:
                    yield from _URL.findall(value)
            tb = tb.tb_next


def _match(url: str) -> Any:
    from blockyard.datasets import DATASETS

    path = url.split("?", 1)[0].split("#", 1)[0]
    for ds in DATASETS.values():
        base = ds.relpath.rsplit("/", 1)[-1]  # green_tripdata_2024-01.parquet, titanic.csv
        # Mage's copy of the taxi data: .../taxi/green/2024/01.parquet
        mage_tail = "/".join(ds.url.split("/")[-4:]) if "/taxi/green/" in ds.url else None
        if path == ds.url or path.endswith("/" + base) or (mage_tail and path.endswith(mage_tail)):
            return ds
    return None


def network_dataset_hint(exc: BaseException) -> str | None:
    """How to read the dataset from the mirror, when `exc` is a network error while
    fetching a known dataset's URL; else None. Never raises."""
    try:
        if not _is_network_error(exc):
            return None
        for url in _urls(exc):
            ds = _match(url)
            if ds is not None:
                return _hint(ds, url)
    except Exception:  # a hint must never hide the block's own error
        return None
    return None


def _hint(ds: Any, url: str) -> str:
    from blockyard.settings import ENV_DATA_MIRROR

    read = "pd.read_csv" if ds.relpath.endswith(".csv") else "pd.read_parquet"
    extra = ", keep_default_na=False" if "keep_default_na=False" in ds.description else ""  # zone "NA"
    mirror = os.environ.get(ENV_DATA_MIRROR)
    where = (f"{ENV_DATA_MIRROR} is {mirror}" if mirror
             else f"set {ENV_DATA_MIRROR}=<dir> to a folder holding <dir>/{ds.relpath}")
    return (f"{url} is the known dataset {ds.name!r}; read it from the local data mirror instead: "
            f"from blockyard.datasets import fetch; df = {read}(fetch({ds.name!r}){extra}) ({where}; "
            f"without a mirror fetch() downloads it once into the cache)")
