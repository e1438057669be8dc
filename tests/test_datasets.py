"""blockyard.datasets against the real mirror and a real local HTTP server."""
from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import pytest

from blockyard import datasets
from blockyard.errors import DatasetError

from mirror import MIRROR
pytestmark = pytest.mark.skipif(not MIRROR.is_dir(), reason="course data mirror not present")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("BLOCKYARD_DATA_MIRROR", raising=False)
    monkeypatch.delenv("BLOCKYARD_DATA_BASE_URL", raising=False)
    monkeypatch.setenv("BLOCKYARD_DATA_CACHE", str(tmp_path / "cache"))
    # Local servers must never go through a proxy.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


class _Server:
    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.requests: list[str] = []
        self.httpd.requests_log = self.requests  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        self.server.requests_log.append(self.path)  # type: ignore[attr-defined]


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    (root / "taxi" / "green").mkdir(parents=True)
    shutil.copy(MIRROR / "titanic.csv", root / "titanic.csv")
    shutil.copy(
        MIRROR / "taxi/green/green_tripdata_2024-02.parquet",
        root / "taxi/green/green_tripdata_2024-02.parquet",
    )
    server = _Server(root)
    yield server, root
    server.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_registry_matches_sha256sums():
    sums = {}
    for line in (MIRROR / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split()
        sums[rel] = digest
    registered = {ds.relpath: ds.sha256 for ds in datasets.DATASETS.values()}
    assert registered == sums
    assert datasets.get("green_tripdata_2024-01").url == (
        "https://github.com/mage-ai/datasets/raw/master/taxi/green/2024/01.parquet"
    )


def test_mirror_hit_returns_verified_mirror_file(monkeypatch, tmp_path):
    monkeypatch.setenv("BLOCKYARD_DATA_MIRROR", str(MIRROR))
    path = datasets.fetch("titanic")
    assert path == MIRROR / "titanic.csv"
    assert not (tmp_path / "cache").exists()  # nothing copied into the cache
    assert datasets.green_taxi_path(2024, 1) == MIRROR / "taxi/green/green_tripdata_2024-01.parquet"


def test_load_helpers_read_the_real_files(monkeypatch):
    monkeypatch.setenv("BLOCKYARD_DATA_MIRROR", str(MIRROR))
    df = datasets.load_green_taxi(["2024-01", (2024, 2)])
    assert len(df) == 110128
    assert df.index.is_unique
    assert len(datasets.load_green_taxi("2024-01")) + len(datasets.load_green_taxi([(2024, 2)])) == 110128
    titanic = datasets.load_titanic()
    assert titanic.shape == (891, 12)
    zones = datasets.load_taxi_zones()
    assert "NA" in set(zones["Zone"])  # keep_default_na=False keeps the literal "NA" zone
    assert not zones.isna().any().any()


def test_mirror_checksum_mismatch_names_file_hashes_and_fix(monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = (MIRROR / "titanic.csv").read_bytes()
    corrupted = data[:-10] + b"corrupted!"
    (mirror / "titanic.csv").write_bytes(corrupted)
    monkeypatch.setenv("BLOCKYARD_DATA_MIRROR", str(mirror))
    with pytest.raises(DatasetError) as info:
        datasets.fetch("titanic")
    text = str(info.value)
    assert str(mirror / "titanic.csv") in text
    assert datasets.get("titanic").sha256 in text
    assert hashlib.sha256(corrupted).hexdigest() in text
    assert "BLOCKYARD_DATA_MIRROR" in text


def test_unknown_dataset_and_month_are_clear():
    with pytest.raises(DatasetError, match="known datasets"):
        datasets.fetch("yellow_tripdata_2024-01")
    with pytest.raises(DatasetError, match="available months"):
        datasets.green_taxi_path(2020, 1)
    with pytest.raises(DatasetError, match="YYYY-MM"):
        datasets.parse_months(["January"])


def test_download_verifies_and_caches_then_reuses_cache(monkeypatch, served, tmp_path):
    server, _root = served
    monkeypatch.setenv("BLOCKYARD_DATA_BASE_URL", server.url)
    path = datasets.fetch("green_tripdata_2024-02", progress=True)
    cache = tmp_path / "cache"
    assert path == cache / "taxi/green/green_tripdata_2024-02.parquet"
    assert datasets.sha256_of(path) == datasets.get("green_tripdata_2024-02").sha256
    assert server.requests == ["/taxi/green/green_tripdata_2024-02.parquet"]
    assert not list(path.parent.glob("*.part"))

    # Second fetch: served from the cache, even with the server gone.
    server.stop()
    assert datasets.fetch("green_tripdata_2024-02") == path
    assert len(datasets.load_green_taxi(["2024-02"])) == 53577


def test_download_with_explicit_url(served):
    server, _root = served
    path = datasets.fetch("titanic", url=f"{server.url}/titanic.csv", progress=False)
    assert path.read_bytes() == (MIRROR / "titanic.csv").read_bytes()
    assert server.requests == ["/titanic.csv"]


def test_download_of_wrong_bytes_is_discarded(monkeypatch, served, tmp_path):
    server, root = served
    (root / "titanic.csv").write_bytes(b"PassengerId,Survived\n1,0\n")
    monkeypatch.setenv("BLOCKYARD_DATA_BASE_URL", server.url)
    with pytest.raises(DatasetError, match="checksum mismatch") as info:
        datasets.fetch("titanic")
    assert server.url in str(info.value)
    cache = tmp_path / "cache"
    assert not (cache / "titanic.csv").exists()
    assert not list(cache.rglob("*.part"))


def test_corrupted_cache_is_reported(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "titanic.csv").write_text("not the titanic\n")
    with pytest.raises(DatasetError) as info:
        datasets.fetch("titanic")
    text = str(info.value)
    assert "delete" in text and str(cache / "titanic.csv") in text


def test_unreachable_url_says_which_url_and_how_to_provide_the_file(monkeypatch, tmp_path):
    port = _closed_port()
    monkeypatch.setenv("BLOCKYARD_DATA_BASE_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(DatasetError) as info:
        datasets.fetch("green_tripdata_2023-05", timeout=5)
    text = str(info.value)
    assert f"http://127.0.0.1:{port}/taxi/green/green_tripdata_2023-05.parquet" in text
    assert str(tmp_path / "cache" / "taxi/green/green_tripdata_2023-05.parquet") in text
    assert "BLOCKYARD_DATA_MIRROR=<dir>" in text
    assert "taxi/green/green_tripdata_2023-05.parquet" in text


def test_http_404_is_reported(monkeypatch, served):
    server, root = served
    (root / "titanic.csv").unlink()
    monkeypatch.setenv("BLOCKYARD_DATA_BASE_URL", server.url)
    with pytest.raises(DatasetError, match="HTTP 404"):
        datasets.fetch("titanic")


def test_mirror_without_the_file_falls_back_to_download(monkeypatch, served, tmp_path):
    server, _root = served
    empty_mirror = tmp_path / "empty_mirror"
    empty_mirror.mkdir()
    monkeypatch.setenv("BLOCKYARD_DATA_MIRROR", str(empty_mirror))
    monkeypatch.setenv("BLOCKYARD_DATA_BASE_URL", server.url)
    path = datasets.fetch("titanic")
    assert path == tmp_path / "cache" / "titanic.csv"
    assert server.requests == ["/titanic.csv"]
