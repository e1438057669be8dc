"""`mage_ai.shared.parsers`: `convert_matrix_to_dataframe`."""
from __future__ import annotations

import sys
from typing import Any

__all__ = ["convert_matrix_to_dataframe"]


def _is_scipy_sparse(value: Any) -> bool:
    # A scipy sparse matrix can only exist once scipy.sparse is imported; don't import it.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(value)


def convert_matrix_to_dataframe(matrix: Any):
    """A dense DataFrame from a scipy sparse matrix, ndarray or list of rows.

    Columns are named "0", "1", ... (strings, as Mage does). A 1-D input becomes one
    column; a DataFrame is returned unchanged.
    """
    import numpy as np
    import pandas as pd

    if isinstance(matrix, pd.DataFrame):
        return matrix
    dense = matrix.toarray() if _is_scipy_sparse(matrix) else np.asarray(matrix)
    if dense.ndim == 1:
        dense = dense.reshape(-1, 1)
    if dense.ndim != 2:
        raise ValueError(
            f"convert_matrix_to_dataframe needs a 2-D matrix, got shape {dense.shape}"
        )
    return pd.DataFrame(dense, columns=[str(i) for i in range(dense.shape[1])])
