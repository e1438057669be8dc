"""Turning feature frames into model matrices."""
from __future__ import annotations

from typing import Optional, Tuple

import pandas as pd
from scipy.sparse import csr_matrix
from sklearn.feature_extraction import DictVectorizer


def vectorize_features(
    training_set: pd.DataFrame,
    validation_set: Optional[pd.DataFrame] = None,
) -> Tuple[csr_matrix, Optional[csr_matrix], DictVectorizer]:
    """Fit a DictVectorizer on the training records (one-hot for strings, values for
    numbers) and apply it to the validation records.

    Pass frames that hold only model features (see `select_features`): every column
    becomes part of the matrix."""
    dv = DictVectorizer()
    X_train = dv.fit_transform(training_set.to_dict('records'))
    X_val = None
    if validation_set is not None:
        X_val = dv.transform(validation_set.to_dict('records'))
    return X_train, X_val, dv
