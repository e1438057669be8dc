"""Alias of `splitters` (the course text names both)."""
from mlops.utils.data_preparation.splitters import split_on_value  # noqa: F401
