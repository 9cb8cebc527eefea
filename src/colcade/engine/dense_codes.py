"""Dense vectors in 8 bits a dimension, as compressed segments store them.

A row is ``d`` int8 values followed by its scale as 4 bytes (float32), one int8 array
``[n, d + 4]``: the vector reads back as ``values * scale`` (scale: the largest magnitude / 127).
At d=128 that is 132 bytes a passage against 256 for float16, and the shortlist's scores move by
~1e-3 (a unit vector's components are rounded to 1/254 of its largest one). Segments written
before kept float16 ``[n, d]``; ``decode`` reads either, and exact segments' float32 as is.
"""

from __future__ import annotations

import numpy as np

_SCALE = 4  # bytes: the float32 scale at the end of a row


def encode(vectors: np.ndarray) -> np.ndarray:
    """int8 ``[n, d + 4]`` rows of float vectors ``[n, d]``.

    >>> v = np.array([[0.5, -1.0, 0.25]], np.float32)
    >>> [round(x, 3) for x in decode(encode(v))[0].tolist()]
    [0.504, -1.0, 0.252]
    """
    vectors = np.asarray(vectors, np.float32)
    peak = np.abs(vectors).max(axis=1) if vectors.shape[1] else np.zeros(len(vectors), np.float32)
    scale = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    out = np.empty((len(vectors), vectors.shape[1] + _SCALE), np.int8)
    out[:, : vectors.shape[1]] = np.clip(np.rint(vectors / scale[:, None]), -127, 127)
    out[:, vectors.shape[1] :] = scale.view(np.int8).reshape(-1, _SCALE)
    return out


def decode(rows: np.ndarray) -> np.ndarray:
    """float32 ``[n, d]`` vectors of stored rows: int8 codes decoded, float16 or float32 converted."""
    rows = np.asarray(rows)
    if rows.dtype != np.int8:
        return np.asarray(rows, np.float32)
    scale = np.ascontiguousarray(rows[:, -_SCALE:]).view(np.float32)  # [n, 1]
    decoded: np.ndarray = rows[:, :-_SCALE].astype(np.float32) * scale
    return decoded


def width(dim: int) -> int:
    """Columns of the int8 array that stores ``dim``-dimensional vectors."""
    return dim + _SCALE
