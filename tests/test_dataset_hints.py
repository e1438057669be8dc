"""The mirror hint of a block whose network request for a known dataset failed."""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from blockyard.dataset_hints import network_dataset_hint
from ui_support import free_port


def _fail(url: str) -> BaseException:
    with pytest.raises(Exception) as info:
        urllib.request.urlopen(url, timeout=5)
    return info.value


def test_known_dataset_urls_get_the_mirror_hint():
    port = free_port()  # closed: connection refused, no internet needed
    hint = network_dataset_hint(_fail(f"http://127.0.0.1:{port}/trip-data/green_tripdata_2024-01.parquet"))
    assert "green_tripdata_2024-01" in hint and "fetch('green_tripdata_2024-01')" in hint and "read_parquet" in hint
    hint = network_dataset_hint(_fail(f"http://127.0.0.1:{port}/mage-ai/datasets/raw/master/taxi/green/2023/03.parquet"))
    assert "green_tripdata_2023-03" in hint
    hint = network_dataset_hint(_fail(f"http://127.0.0.1:{port}/misc/taxi_zone_lookup.csv"))
    assert "pd.read_csv(fetch('taxi_zone_lookup'), keep_default_na=False)" in hint


def test_no_hint_for_other_urls_or_other_errors():
    port = free_port()
    assert network_dataset_hint(_fail(f"http://127.0.0.1:{port}/my_own_data.csv")) is None
    assert network_dataset_hint(FileNotFoundError("titanic.csv http://x/titanic.csv")) is None
    assert network_dataset_hint(ValueError("bad")) is None
