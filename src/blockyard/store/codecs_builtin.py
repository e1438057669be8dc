"""Codecs for arrays, models and plain values: scipy sparse (.npz), numpy (.npy),
XGBoost boosters (UBJSON), scikit-learn estimators (pickle 5), exact JSON, and the
cloudpickle fallback that takes anything."""
from __future__ import annotations

import json
import pickle
from typing import Any

import blockyard.store.hashing as _hashing
import blockyard.store.summary as _summary
from blockyard.store.codec_base import (
    BytesCodec,
    Codec,
    CodecSkip,
    is_local_fs,
    json_exact,
    loaded,
    open_read,
    open_write,
    readable,
)


# --- scipy sparse -------------------------------------------------------------------------

class ScipySparseCodec(Codec):
    """scipy.sparse matrices/arrays -> uncompressed .npz (scipy.sparse.save_npz /
    load_npz): csr stays csr, csr_array stays csr_array."""

    name = "scipy_sparse_npz"
    extension = ".npz"
    summarizer = staticmethod(_summary.sparse)
    _FORMATS = ("csr", "csc", "coo", "bsr", "dia")

    def can_encode(self, obj: Any) -> bool:
        sp = loaded("scipy.sparse")
        if sp is None or not sp.issparse(obj):
            return False
        return getattr(obj, "format", None) in self._FORMATS and obj.dtype.kind != "O"

    def save(self, obj: Any, fs: Any, path: str) -> None:
        import scipy.sparse as sp

        # deterministic bytes: zipfile stamps members opened for writing with 1980-01-01
        with open_write(fs, path) as f:
            sp.save_npz(f, obj, compressed=False)

    def load(self, fs: Any, path: str) -> Any:
        import scipy.sparse as sp

        return sp.load_npz(readable(fs, path))


# --- numpy --------------------------------------------------------------------------------


class NumpyCodec(Codec):
    """numpy ndarray (no object fields) -> .npy. Large local files are memory-mapped
    copy-on-write and returned as a plain, writable np.ndarray view."""

    name = "numpy_npy"
    extension = ".npy"
    library, type_name = "numpy", "ndarray"
    summarizer = staticmethod(_summary.ndarray)
    MMAP_MIN_BYTES = 1 << 20

    def can_encode(self, obj: Any) -> bool:
        return super().can_encode(obj) and not obj.dtype.hasobject

    def save(self, obj: Any, fs: Any, path: str) -> dict | None:
        import numpy as np

        with _hashing.HashWhileWriting() as hashed:
            with open_write(fs, path) as f:
                hashed.follow(path, when=is_local_fs(fs) and obj.nbytes >= _hashing.FOLLOW_MIN_BYTES)
                np.lib.format.write_array(f, obj, allow_pickle=False)
        return hashed.result

    def load(self, fs: Any, path: str) -> Any:
        import os

        import numpy as np

        if is_local_fs(fs) and os.path.getsize(path) >= self.MMAP_MIN_BYTES:
            mapped = np.load(path, mmap_mode="c", allow_pickle=False)
            return mapped.view(np.ndarray)  # writable (private pages), plain ndarray type
        return np.load(readable(fs, path), allow_pickle=False)


# --- models -------------------------------------------------------------------------------


class XGBoostBoosterCodec(BytesCodec):
    """xgboost.Booster -> native UBJSON model (Booster.save_raw('ubj') / load_model).
    Keeps trees, feature names/types and attributes (best_iteration...); like
    save_model, it does not keep runtime-only config such as nthread."""

    name = "xgboost_ubj"
    extension = ".ubj"
    library, type_name, exact = "xgboost", "Booster", False
    summarizer = staticmethod(_summary.xgboost_booster)

    def encode(self, obj: Any) -> bytes:
        return bytes(obj.save_raw(raw_format="ubj"))

    def decode(self, data: bytes) -> Any:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        return booster


class _PickleFileCodec(Codec):
    """One pickle stream per file, read back with `pickle.load`; subclasses choose how
    to write it (`dump(obj, file)`)."""

    def dump(self, obj: Any, f: Any) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def save(self, obj: Any, fs: Any, path: str) -> None:
        with open_write(fs, path) as f:
            self.dump(obj, f)

    def load(self, fs: Any, path: str) -> Any:
        with open_read(fs, path) as f:
            return pickle.load(f)


class SklearnCodec(_PickleFileCodec):
    """scikit-learn estimators (BaseEstimator instances: DictVectorizer, Pipeline,
    XGBRegressor...) -> a pickle protocol 5 stream (`joblib.load` reads it too).

    Not `joblib.dump`: its pure-Python pickler takes 37 ms for the course's fitted
    DictVectorizer where the C pickler takes 2 ms, and protocol 5 already writes
    numpy arrays as raw buffers. Estimators pickle cannot handle (lambdas inside)
    go to cloudpickle."""

    name = "sklearn_pickle"
    extension = ".skl.pkl"
    library, type_name, exact = "sklearn.base", "BaseEstimator", False
    summarizer = staticmethod(_summary.sklearn_model)

    def dump(self, obj: Any, f: Any) -> None:
        try:
            pickle.dump(obj, f, protocol=5)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise CodecSkip(f"pickle cannot store this estimator: {exc}") from exc


# --- plain values -------------------------------------------------------------------------


class JsonCodec(BytesCodec):
    """None/bool/int/float/str and lists/dicts of those -> .json, only when JSON gives the
    same value back (tuples, non-str keys, numpy scalars, subclasses go to cloudpickle)."""

    name = "json"
    extension = ".json"
    summarizer = staticmethod(_summary.json_value)

    def can_encode(self, obj: Any) -> bool:
        return json_exact(obj)

    def encode(self, obj: Any) -> bytes:
        try:
            return json.dumps(obj, separators=(",", ":")).encode()
        except (ValueError, RecursionError) as exc:
            raise CodecSkip(str(exc)) from exc

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


class PickleCodec(_PickleFileCodec):
    """Anything else -> cloudpickle (lambdas, closures, classes defined in blocks)."""

    name = "cloudpickle"
    extension = ".pkl"

    def can_encode(self, obj: Any) -> bool:
        return True

    def dump(self, obj: Any, f: Any) -> None:
        import cloudpickle

        cloudpickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
