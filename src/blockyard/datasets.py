"""Named public datasets: where they live, what their bytes hash to, and how to get them.

`fetch(name)` returns a local path to a verified copy, looking in this order:

1. the mirror directory named by ``BLOCKYARD_DATA_MIRROR`` (read-only, same layout as
   ``Dataset.relpath``: ``taxi/green/green_tripdata_2024-01.parquet``, ``titanic.csv``, ...);
2. the download cache (``BLOCKYARD_DATA_CACHE``, default ``~/.cache/blockyard/data``);
3. the public URL, streamed to a temporary file with a progress bar, checked against
   its sha256 and only then moved into the cache.

A file whose sha256 differs from the recorded one is never handed out: it raises
:class:`blockyard.errors.DatasetError` that names the file, both hashes and the fix.

Heavy libraries (pandas, requests, rich) are imported inside the functions.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from blockyard.errors import DatasetError
from blockyard.settings import ENV_DATA_MIRROR

ENV_DATA_CACHE = "BLOCKYARD_DATA_CACHE"
# Used by tests (and private mirrors): downloads come from <base>/<relpath> instead of
# each dataset's public URL.
ENV_DATA_BASE_URL = "BLOCKYARD_DATA_BASE_URL"

logger = logging.getLogger("blockyard.datasets")


@dataclass(frozen=True)
class Dataset:
    name: str
    url: str
    sha256: str
    relpath: str  # layout inside a mirror directory and inside the cache
    description: str = ""


_GREEN_SHA256 = {
    "2023-01": "9f0e03dd7f8f94ecc15949cdbfd2a4e1fc9ebb41a11882215158c9fc95012e31",
    "2023-02": "bcc2821d639197cbb09aeb8994121a7004f2a6568a64bf4839015db802f62743",
    "2023-03": "69ab2c3b515ad1dd686a8ac3375370b8a44b003d95d340655d94828db0681d9d",
    "2023-04": "d28bf0485ac095e923c736180cf1b4fb247fdbcee1ae6d77eb78e7a185b7aacf",
    "2023-05": "8545a8510b2f33e4bec7a2e12f9ff1f83752bb6a976dfbbc347b4fb7ae28eb2d",
    "2023-06": "8f24ad7786b81240d39c87fb3d13a90a5d62e417a3a1dbbe6f55f933b181c02f",
    "2023-07": "a5063fa42a5d40aaa965d26033568d75cec3771069203bc286536df36e83d26f",
    "2023-08": "814047ade6975e67c39b5bffeba304386be258ebef7adbcc572019e35128f13c",
    "2023-09": "d5fa110f59c10387fc2e4d3bbc4edd572291392bc209f972ce52387a8dd81c90",
    "2023-10": "2ef902d6c0aa5e17f2feb32e8356db9df7e8cd0110519bcd3bc31f4c35bf6a40",
    "2023-11": "5b117ff8ee0efe0cf532021588cad7d79c477e6fee3d3a6fb42b6140d4675fbf",
    "2023-12": "1c43ac95b8b416293ab0b2953824ee5321443fc4c47e4236f295424e48e7aea3",
    "2024-01": "1512a953bed564ac68dcb622827424dfb4f68ad93c2a4572e50ef6ab0b09c1ad",
    "2024-02": "cb7eb405ee7e795c9fd6b8ad1b291f46f4e0a1cd60a57067b0aaca2420e8bc5d",
}


def _build_registry() -> dict[str, Dataset]:
    reg: dict[str, Dataset] = {}
    for ym, sha in _GREEN_SHA256.items():
        year, month = ym.split("-")
        name = f"green_tripdata_{ym}"
        reg[name] = Dataset(
            name=name,
            url=f"https://github.com/mage-ai/datasets/raw/master/taxi/green/{year}/{month}.parquet",
            sha256=sha,
            relpath=f"taxi/green/green_tripdata_{ym}.parquet",
            description=f"NYC TLC green taxi trips, {ym}",
        )
    reg["titanic"] = Dataset(
        name="titanic",
        url="https://raw.githubusercontent.com/datasciencedojo/datasets/master/titanic.csv",
        sha256="4a437fde05fe5264e1701a7387ac6fb75393772ba38bb2c9c566405af5af4bd7",
        relpath="titanic.csv",
        description="Titanic passengers (891 rows)",
    )
    reg["taxi_zone_lookup"] = Dataset(
        name="taxi_zone_lookup",
        url="https://d37ci6vzurychx.cloudfront.net/misc/taxi_zone_lookup.csv",
        sha256="598bfdd5170dcd8b9cfb5ec7f8dc283552e1b79cf0bcf3b7a0463fec1bfef115",
        relpath="taxi_zone_lookup.csv",
        description="NYC TLC taxi zone lookup (read with keep_default_na=False)",
    )
    return reg


DATASETS: dict[str, Dataset] = _build_registry()

# (path, size, mtime_ns) -> sha256, so a file is hashed once per process per version.
_hash_memo: dict[tuple[str, int, int], str] = {}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def get(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}",
            hint="known datasets: " + ", ".join(list_datasets()),
        ) from None


def cache_dir() -> Path:
    value = os.environ.get(ENV_DATA_CACHE)
    if value:
        return Path(value).expanduser()
    return Path("~/.cache/blockyard/data").expanduser()


def mirror_dir() -> Path | None:
    value = os.environ.get(ENV_DATA_MIRROR)
    return Path(value).expanduser() if value else None


def sha256_of(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    cached = _hash_memo.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    _hash_memo[key] = digest
    return digest


def _verify(ds: Dataset, path: Path, where: str) -> Path:
    actual = sha256_of(path)
    if actual != ds.sha256:
        if where == "mirror":
            fix = (
                f"replace {path} with the original from {ds.url}, or point "
                f"{ENV_DATA_MIRROR} at a directory with intact copies (or unset it to download)"
            )
        else:
            fix = (
                f"delete {path} so it is downloaded again, or set {ENV_DATA_MIRROR}=<dir> "
                f"to a directory holding <dir>/{ds.relpath}"
            )
        raise DatasetError(
            f"checksum mismatch for dataset {ds.name!r} in the {where}: expected sha256 "
            f"{ds.sha256}, got {actual}",
            file=path,
            hint=fix,
        )
    return path


def _download_url(ds: Dataset, url: str | None) -> str:
    if url:
        return url
    base = os.environ.get(ENV_DATA_BASE_URL)
    if base:
        return base.rstrip("/") + "/" + ds.relpath
    return ds.url


def fetch(
    name: str,
    *,
    url: str | None = None,
    mirror: str | Path | None = None,
    cache: str | Path | None = None,
    progress: bool | None = None,
    timeout: float = 30.0,
) -> Path:
    """Return the local path of a verified copy of dataset `name`.

    `url` overrides where a download comes from (else ``BLOCKYARD_DATA_BASE_URL`` +
    relpath, else the public URL); `mirror` and `cache` override the directories from
    the environment; `progress` forces the progress bar on or off (default: on when
    stderr is a terminal).
    """
    ds = get(name)
    mirror_path = Path(mirror).expanduser() if mirror is not None else mirror_dir()
    if mirror_path is not None:
        candidate = mirror_path / ds.relpath
        if candidate.is_file():
            return _verify(ds, candidate, "mirror")
        logger.debug("dataset %s not in mirror %s", name, mirror_path)

    cache_root = Path(cache).expanduser() if cache is not None else cache_dir()
    target = cache_root / ds.relpath
    if target.is_file():
        return _verify(ds, target, "cache")

    source = _download_url(ds, url)
    _download(ds, source, target, progress=progress, timeout=timeout, mirror=mirror_path)
    return target


def _download(
    ds: Dataset,
    url: str,
    target: Path,
    *,
    progress: bool | None,
    timeout: float,
    mirror: Path | None,
) -> None:
    import requests

    how = (
        f"download {ds.url} to {target} yourself, or set "
        f"{ENV_DATA_MIRROR}=<dir> to a directory holding <dir>/{ds.relpath}"
    )
    if mirror is not None:
        how += f" (the mirror {mirror} has no {ds.relpath})"
    try:
        response = requests.get(url, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise DatasetError(
            f"could not download dataset {ds.name!r} from {url}: {type(exc).__name__}: {exc}",
            hint=how,
        ) from None
    with response:
        if response.status_code != 200:
            raise DatasetError(
                f"could not download dataset {ds.name!r} from {url}: HTTP {response.status_code}",
                hint=how,
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        total = int(response.headers.get("content-length") or 0) or None
        h = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, _progress(ds.name, total, progress) as advance:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    if not chunk:
                        continue
                    out.write(chunk)
                    h.update(chunk)
                    advance(len(chunk))
            actual = h.hexdigest()
            if actual != ds.sha256:
                raise DatasetError(
                    f"checksum mismatch for dataset {ds.name!r} downloaded from {url}: "
                    f"expected sha256 {ds.sha256}, got {actual}",
                    file=target,
                    hint="the download was discarded; retry, or " + how,
                )
            os.replace(tmp, target)
        except requests.RequestException as exc:
            raise DatasetError(
                f"download of dataset {ds.name!r} from {url} broke off: {exc}", hint=how
            ) from None
        finally:
            if tmp.exists():
                tmp.unlink()
    logger.info("downloaded %s to %s", ds.name, target)


class _progress:
    """A rich download bar on a terminal; a no-op elsewhere."""

    def __init__(self, label: str, total: int | None, enabled: bool | None) -> None:
        self.label = label
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        task = self._bar.add_task(f"downloading {self.label}", total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


# ---------------------------------------------------------------------------------------
# Course helpers


def _parse_month(value) -> tuple[int, int]:
    if isinstance(value, str):
        text = value.strip()
        try:
            year, month = text.split("-")[:2]
            return int(year), int(month)
        except ValueError:
            raise DatasetError(
                f"month {value!r} is not in the form 'YYYY-MM'", hint="e.g. '2024-01'"
            ) from None
    try:
        year, month = value
        return int(year), int(month)
    except (TypeError, ValueError):
        raise DatasetError(
            f"month {value!r} is neither 'YYYY-MM' nor a (year, month) pair"
        ) from None


def parse_months(months) -> list[tuple[int, int]]:
    """'2024-01,2024-02', ['2024-01', (2024, 2)] or [[2024, 1]] -> [(2024, 1), (2024, 2)]."""
    if isinstance(months, str):
        items: Iterable = [m for m in months.replace(" ", "").split(",") if m]
    elif isinstance(months, tuple) and len(months) == 2 and all(isinstance(v, int) for v in months):
        items = [months]
    else:
        items = months
    return [_parse_month(m) for m in items]


def green_taxi_path(year: int, month: int, **fetch_kwargs) -> Path:
    name = f"green_tripdata_{int(year):04d}-{int(month):02d}"
    if name not in DATASETS:
        known = ", ".join(sorted(_GREEN_SHA256))
        raise DatasetError(
            f"no green taxi data registered for {int(year):04d}-{int(month):02d}",
            hint=f"available months: {known}",
        )
    return fetch(name, **fetch_kwargs)


def load_green_taxi(months: Sequence = ("2024-01", "2024-02"), **fetch_kwargs):
    """The green taxi trips of the given months, concatenated in order (fresh index)."""
    import pandas as pd

    frames = [pd.read_parquet(green_taxi_path(y, m, **fetch_kwargs)) for y, m in parse_months(months)]
    if not frames:
        raise DatasetError("load_green_taxi needs at least one month", hint="e.g. ['2024-01']")
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)


def load_titanic(**fetch_kwargs):
    import pandas as pd

    return pd.read_csv(fetch("titanic", **fetch_kwargs))


def load_taxi_zones(**fetch_kwargs):
    import pandas as pd

    return pd.read_csv(fetch("taxi_zone_lookup", **fetch_kwargs), keep_default_na=False)
