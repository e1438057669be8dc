"""Alias of `encoders` (the course text names both)."""
from mlops.utils.data_preparation.encoders import vectorize_features  # noqa: F401
