"""Dense vectors in 4 bits a dimension, as compressed segments store them.

A row is ``d / 2`` bytes, two dimensions a byte (the even one in the low nibble), followed by its
step as 4 bytes (float32), one uint8 array ``[n, d / 2 + 4]``: a nibble ``v`` reads back as
``(v - 7.5) * step``. The step is 0.3352 of the row's root mean square, the optimal uniform step
for 16 levels of a Gaussian (J. Max, 1960), so the rare large component is clipped instead of
stretching every level. At d=128 that is 68 bytes a passage against 132 at 8 bits and 256 for
float16; a unit vector's inner products move by ~7e-3, and the dense shortlist keeps as many of
the exact top-10 as at 8 bits (100k synthetic passages: BENCHMARKS.md, "How many bits the dense
shortlist needs"; the real collections: "Compressed storage: size, quality, fidelity"). A vector
with one dominant component loses more (its peak is clipped at 2.7 rms): the dense vectors colcade
makes are pooled token vectors, whose largest component is 3-4 rms.

Rows written before are read as they are: 8 bits (int8 ``[n, d + 4]``, a row's float32 scale
last; still written for an odd ``d``), float16 ``[n, d]`` in older compressed segments, and float32
in exact ones.
"""

from __future__ import annotations

import numpy as np

from colcade.engine.kernels import dense4

_SCALE = 4  # bytes: the float32 step (or scale) at the end of a row
_STEP = 0.3352  # of the row's rms: Max's optimal uniform quantizer, 16 levels, Gaussian input
_PAIRS = np.stack([np.arange(256) & 15, np.arange(256) >> 4], axis=1).astype(np.float32) - 7.5  # [256, 2]


def layout(dim: int) -> tuple[np.dtype, int]:
    """dtype and columns of the array that stores ``dim``-dimensional vectors."""
    if dim % 2:
        return np.dtype(np.int8), dim + _SCALE
    return np.dtype(np.uint8), dim // 2 + _SCALE


def current(rows: np.ndarray, dim: int) -> bool:
    """Whether ``rows`` are in the layout ``encode`` writes today (so they can be copied as they are)."""
    dtype, cols = layout(dim)
    return rows.dtype == dtype and rows.shape[1:] == (cols,)


def encode(vectors: np.ndarray) -> np.ndarray:
    """Rows in the current layout of float vectors ``[n, d]`` (4 bits a dimension; 8 for an odd ``d``).

    >>> v = np.array([[0.5, -1.0, 0.25, 0.0]], np.float32)
    >>> [round(x, 2) for x in decode(encode(v))[0].tolist()]
    [0.48, -1.06, 0.29, 0.1]
    """
    vectors = np.asarray(vectors, np.float32)
    n, dim = vectors.shape
    if dim % 2:
        return _encode8(vectors)
    rms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64) / max(dim, 1))  # no overflow
    step = (rms * _STEP).astype(np.float32)  # 0 for an all-zero row: it decodes to zeros
    scaled = np.divide(vectors, step[:, None], out=np.zeros_like(vectors), where=step[:, None] > 0)
    nibbles = np.clip(np.floor(scaled) + 8, 0, 15).astype(np.uint8)
    out = np.empty((n, dim // 2 + _SCALE), np.uint8)
    out[:, : dim // 2] = nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)
    out[:, dim // 2 :] = step.view(np.uint8).reshape(-1, _SCALE)
    return out


def decode(rows: np.ndarray) -> np.ndarray:
    """float32 ``[n, d]`` vectors of stored rows, in any layout a segment may hold."""
    rows = np.asarray(rows)
    if rows.dtype == np.int8:
        scale = np.ascontiguousarray(rows[:, -_SCALE:]).view(np.float32)  # [n, 1]
        decoded8: np.ndarray = rows[:, :-_SCALE].astype(np.float32) * scale
        return decoded8
    if rows.dtype != np.uint8:
        return np.asarray(rows, np.float32)
    step = np.ascontiguousarray(rows[:, -_SCALE:]).view(np.float32)  # [n, 1]
    packed = np.ascontiguousarray(rows[:, :-_SCALE])  # np.take on a contiguous index: ~5x fancy indexing
    out: np.ndarray = np.take(_PAIRS, packed, axis=0).reshape(len(rows), 2 * packed.shape[1])  # two a byte
    out *= step
    return out


def query_table(query: np.ndarray) -> np.ndarray:
    """float32 ``[d / 2, 256]``: what byte value ``b`` at byte ``j`` of a 4-bit row is worth against
    ``query`` before the row's step (both nibbles), so a row scores as ``h`` lookups (``scores``)."""
    pairs = np.asarray(query, np.float32).reshape(-1, 2)  # [d / 2, 2]: the even and the odd dimension
    table: np.ndarray = pairs @ _PAIRS.T
    return table


def scores(rows: np.ndarray, positions: np.ndarray, query: np.ndarray) -> np.ndarray:
    """float32 inner products of ``query`` with ``rows[positions]``, as ``decode(rows[positions]) @ query``.

    Rows of 4 bits a dimension are scored where they lie, byte by byte through ``query_table``
    (the compiled kernel), with nothing decoded; older layouts are decoded first.

    >>> v = np.array([[0.5, -1.0, 0.25, 0.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    >>> q = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    >>> bool(np.allclose(scores(encode(v), np.array([1, 0]), q), decode(encode(v))[[1, 0]] @ q))
    True
    """
    query = np.asarray(query, np.float32)
    # Only rows as stored (contiguous): the kernel must not be handed a copy of a whole segment.
    if (
        rows.dtype == np.uint8
        and rows.ndim == 2
        and rows.shape[1] * 2 - 2 * _SCALE == len(query)
        and rows.flags.c_contiguous
    ):
        return dense4(query_table(query), rows, positions)
    out: np.ndarray = decode(rows[positions]) @ query
    return out


def _encode8(vectors: np.ndarray) -> np.ndarray:
    """int8 rows ``[n, d + 4]``: values * scale, the scale (largest magnitude / 127) last."""
    peak = np.abs(vectors).max(axis=1) if vectors.shape[1] else np.zeros(len(vectors), np.float32)
    scale = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    out = np.empty((len(vectors), vectors.shape[1] + _SCALE), np.int8)
    out[:, : vectors.shape[1]] = np.clip(np.rint(vectors / scale[:, None]), -127, 127)
    out[:, vectors.shape[1] :] = scale.view(np.int8).reshape(-1, _SCALE)
    return out
