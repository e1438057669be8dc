"""Codecs for arrays, models and plain values: scipy sparse (.npz), numpy (.npy),
XGBoost boosters (UBJSON), scikit-learn estimators (pickle 5), exact JSON, and the
cloudpickle fallback that takes anything."""
from __future__ import annotations

import io
import json
import pickle
from typing import Any

import blockyard.store.hashing as _hashing
import blockyard.store.summary as _summary
from blockyard.store.codec_base import (
    Codec,
    CodecSkip,
    is_local_fs,
    json_exact,
    loaded,
    open_read,
    open_write,
    read_bytes,
    write_bytes,
)


# --- scipy sparse -------------------------------------------------------------------------

class ScipySparseCodec(Codec):
    """scipy.sparse matrices/arrays -> uncompressed .npz (scipy.sparse.save_npz /
    load_npz): csr stays csr, csr_array stays csr_array."""

    name = "scipy_sparse_npz"
    extension = ".npz"
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

        if is_local_fs(fs):
            return sp.load_npz(path)
        return sp.load_npz(io.BytesIO(fs.cat_file(path)))

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.sparse(obj)


# --- numpy --------------------------------------------------------------------------------


class NumpyCodec(Codec):
    """numpy ndarray (no object fields) -> .npy. Large local files are memory-mapped
    copy-on-write and returned as a plain, writable np.ndarray view."""

    name = "numpy_npy"
    extension = ".npy"
    MMAP_MIN_BYTES = 1 << 20

    def can_encode(self, obj: Any) -> bool:
        np = loaded("numpy")
        return np is not None and type(obj) is np.ndarray and not obj.dtype.hasobject

    def save(self, obj: Any, fs: Any, path: str) -> dict | None:
        import numpy as np

        hasher = None
        try:
            with open_write(fs, path) as f:
                if is_local_fs(fs) and obj.nbytes >= _hashing.FOLLOW_MIN_BYTES:
                    hasher = _hashing.FollowingHasher(path)
                np.lib.format.write_array(f, obj, allow_pickle=False)
        except BaseException:
            if hasher is not None:
                hasher.abort()
            raise
        if hasher is None:
            return None
        digest, size = hasher.finish()
        return {"blake2b": digest, "bytes": size}

    def load(self, fs: Any, path: str) -> Any:
        import os

        import numpy as np

        if is_local_fs(fs):
            if os.path.getsize(path) >= self.MMAP_MIN_BYTES:
                mapped = np.load(path, mmap_mode="c", allow_pickle=False)
                return mapped.view(np.ndarray)  # writable (private pages), plain ndarray type
            return np.load(path, allow_pickle=False)
        return np.load(io.BytesIO(fs.cat_file(path)), allow_pickle=False)

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.ndarray(obj)


# --- models -------------------------------------------------------------------------------


class XGBoostBoosterCodec(Codec):
    """xgboost.Booster -> native UBJSON model (Booster.save_raw('ubj') / load_model).
    Keeps trees, feature names/types and attributes (best_iteration...); like
    save_model, it does not keep runtime-only config such as nthread."""

    name = "xgboost_ubj"
    extension = ".ubj"

    def can_encode(self, obj: Any) -> bool:
        xgb = loaded("xgboost")
        return xgb is not None and isinstance(obj, xgb.Booster)

    def save(self, obj: Any, fs: Any, path: str) -> None:
        raw = obj.save_raw(raw_format="ubj")
        write_bytes(fs, path, bytes(raw))

    def load(self, fs: Any, path: str) -> Any:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(read_bytes(fs, path)))
        return booster

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.xgboost_booster(obj)


class SklearnCodec(Codec):
    """scikit-learn estimators (BaseEstimator instances: DictVectorizer, Pipeline,
    XGBRegressor...) -> a pickle protocol 5 stream (`joblib.load` reads it too).

    Not `joblib.dump`: its pure-Python pickler takes 37 ms for the course's fitted
    DictVectorizer where the C pickler takes 2 ms, and protocol 5 already writes
    numpy arrays as raw buffers. Estimators pickle cannot handle (lambdas inside)
    go to cloudpickle."""

    name = "sklearn_pickle"
    extension = ".skl.pkl"

    def can_encode(self, obj: Any) -> bool:
        base = loaded("sklearn.base")
        return base is not None and isinstance(obj, base.BaseEstimator)

    def save(self, obj: Any, fs: Any, path: str) -> None:
        try:
            with open_write(fs, path) as f:
                pickle.dump(obj, f, protocol=5)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise CodecSkip(f"pickle cannot store this estimator: {exc}") from exc

    def load(self, fs: Any, path: str) -> Any:
        with open_read(fs, path) as f:
            return pickle.load(f)

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.sklearn_model(obj)


# --- plain values -------------------------------------------------------------------------


class JsonCodec(Codec):
    """None/bool/int/float/str and lists/dicts of those -> .json, only when JSON gives the
    same value back (tuples, non-str keys, numpy scalars, subclasses go to cloudpickle)."""

    name = "json"
    extension = ".json"

    def can_encode(self, obj: Any) -> bool:
        return json_exact(obj)

    def save(self, obj: Any, fs: Any, path: str) -> None:
        try:
            data = json.dumps(obj, separators=(",", ":")).encode()
        except (ValueError, RecursionError) as exc:
            raise CodecSkip(str(exc)) from exc
        write_bytes(fs, path, data)

    def load(self, fs: Any, path: str) -> Any:
        return json.loads(read_bytes(fs, path))

    def summarize(self, obj: Any) -> tuple[dict, Any]:
        return _summary.json_value(obj)


class PickleCodec(Codec):
    """Anything else -> cloudpickle (lambdas, closures, classes defined in blocks)."""

    name = "cloudpickle"
    extension = ".pkl"

    def can_encode(self, obj: Any) -> bool:
        return True

    def save(self, obj: Any, fs: Any, path: str) -> None:
        import cloudpickle

        with open_write(fs, path) as f:
            cloudpickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, fs: Any, path: str) -> Any:
        with open_read(fs, path) as f:
            return pickle.load(f)
