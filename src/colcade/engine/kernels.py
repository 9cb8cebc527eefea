"""MaxSim over ragged candidate sets: float (rerank) and inverted Hamming (prefilter).

Shapes and dtypes, for one segment of ``n`` passages holding ``T`` tokens of ``d`` dims:

- ``q``: float32 ``[nq, d]``, query token vectors;
- ``tokens``: float16 ``[T, d]``, passage token vectors, passage ``i`` owning
  ``tokens[offsets[i]:offsets[i + 1]]``;
- ``bits``: uint8 ``[T, ceil(d / 8)]``, ``np.packbits(tokens > 0, axis=1)``;
- ``offsets``: int64 ``[n + 1]``; ``cand``: int64 ``[m]``, the passages to score.

``maxsim`` returns float32 ``[m]``: for each candidate, the sum over query tokens of the best
dot product over its tokens. ``maxsim_hamming`` returns int32 ``[m]``: the same with
``d - hamming(q_bits, token_bits)`` as similarity (Elasticsearch's ``maxSimInvHamming``).

The compiled kernels (``colcade.engine._kernels``; AVX-512, AVX2 or portable C, picked at run time) do the work;
the ``*_reference`` functions are the plain numpy definitions the tests hold them to.
Set ``COLCADE_KERNELS=numpy`` to run the reference code everywhere.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from colcade.errors import InvalidInputError

if TYPE_CHECKING:
    from colcade.engine.codec import ResidualCodec

_c: Any
try:
    from colcade.engine import _kernels as _c  # type: ignore[attr-defined,no-redef]  # the compiled extension
except ImportError as exc:  # a source checkout that was never built
    _c = None
    if os.environ.get("COLCADE_KERNELS") != "numpy":
        warnings.warn(
            f"colcade's compiled kernels are missing ({exc}); falling back to numpy, which is "
            "10-100x slower. Reinstall with `pip install --force-reinstall colcade` (needs a C compiler).",
            RuntimeWarning,
            stacklevel=2,
        )

__all__ = [
    "backend",
    "binarize",
    "dense4",
    "dense4_reference",
    "maxsim",
    "maxsim_codes",
    "maxsim_codes_reference",
    "maxsim_hamming",
    "maxsim_hamming_reference",
    "maxsim_reference",
    "maxsim_residual",
    "maxsim_residual_reference",
    "pad_lanes",
]


def backend() -> str:
    """The kernels in use: ``"c-avx512"``, ``"c-avx2"``, ``"c-scalar"`` or ``"numpy"``.

    >>> backend() in {"c-avx512", "c-avx2", "c-scalar", "numpy"}
    True
    """
    if _c is None or os.environ.get("COLCADE_KERNELS") == "numpy":
        return "numpy"
    return "c-" + str(_c.isa())


def binarize(vectors: np.ndarray) -> np.ndarray:
    """Sign bits of token vectors, 8 dimensions a byte: uint8 ``[t, ceil(d / 8)]``.

    >>> binarize(np.array([[0.5, -1.0, 2.0]], dtype=np.float32))
    array([[160]], dtype=uint8)
    """
    return np.packbits(np.asarray(vectors) > 0, axis=-1)


def _prepare(offsets: np.ndarray, cand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if cand is None:
        cand = np.arange(len(offsets) - 1, dtype=np.int64)
    return offsets, np.ascontiguousarray(cand, dtype=np.int64)


def _check(offsets: np.ndarray, cand: np.ndarray, n_rows: int) -> None:
    """What the C kernels check before reading: candidates index passages inside the buffer."""
    n = len(offsets) - 1
    if len(cand) and (cand.min() < 0 or cand.max() >= n):
        raise InvalidInputError(f"candidates must lie in [0, {n}), but got {cand.min()}..{cand.max()}")
    start, stop = offsets[cand], offsets[cand + 1] if len(cand) else offsets[:0]
    if len(cand) and ((start < 0).any() or (stop <= start).any() or (stop > n_rows).any()):
        raise InvalidInputError(f"offsets must rise within the {n_rows} rows of the token buffer")


def _call(kernel: Callable[..., Any], *args: Any) -> Any:
    try:
        return kernel(*args)
    except (IndexError, ValueError) as exc:  # the C checks: nothing was read out of bounds
        raise InvalidInputError(str(exc)) from None


def maxsim(q: np.ndarray, tokens: np.ndarray, offsets: np.ndarray, cand: np.ndarray | None = None) -> np.ndarray:
    """Float MaxSim of one query against candidate passages (all of them when ``cand`` is None).

    >>> q = np.array([[1.0, 0.0]], dtype=np.float32)
    >>> tokens = np.array([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]], dtype=np.float16)
    >>> maxsim(q, tokens, np.array([0, 2, 3])).tolist()
    [1.0, 0.0]
    """
    q = np.ascontiguousarray(q, dtype=np.float32)
    offsets, cand = _prepare(offsets, cand)
    if backend() == "numpy" or tokens.dtype != np.float16:
        _check(offsets, cand, len(tokens))
        return maxsim_reference(q, tokens, offsets, cand)
    if tokens.ndim != 2 or tokens.shape[1] != q.shape[1]:
        raise InvalidInputError(f"tokens must be [T, {q.shape[1]}] like the query, but got {tokens.shape}")
    out = np.empty(len(cand), dtype=np.float32)
    if len(cand):
        _call(
            _c.maxsim_f16, q, np.ascontiguousarray(tokens).view(np.uint16), offsets, cand, out, q.shape[0], q.shape[1]
        )
    return out


def maxsim_hamming(
    qbits: np.ndarray, bits: np.ndarray, offsets: np.ndarray, cand: np.ndarray | None, dim: int
) -> np.ndarray:
    """Inverted-Hamming MaxSim of one binarized query against candidate passages.

    ``dim`` is the vectors' true dimension (the bits may be padded to whole bytes).

    >>> qbits = binarize(np.array([[1.0, -1.0]]))
    >>> bits = binarize(np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]]))
    >>> maxsim_hamming(qbits, bits, np.array([0, 2, 3]), None, dim=2).tolist()
    [2, 0]
    """
    qbits = np.ascontiguousarray(qbits, dtype=np.uint8)
    offsets, cand = _prepare(offsets, cand)
    if backend() == "numpy":
        _check(offsets, cand, len(bits))
        return maxsim_hamming_reference(qbits, bits, offsets, cand, dim)
    if bits.ndim != 2 or bits.shape[1] != qbits.shape[1]:
        raise InvalidInputError(f"bits must be [T, {qbits.shape[1]}] like the query's, but got {bits.shape}")
    out = np.empty(len(cand), dtype=np.int32)
    if len(cand):
        _call(
            _c.maxsim_hamming,
            qbits,
            np.ascontiguousarray(bits),
            offsets,
            cand,
            out,
            qbits.shape[0],
            qbits.shape[1],
            dim,
        )
    return out


def maxsim_residual(
    q: np.ndarray, codec: ResidualCodec, codes: np.ndarray, packed: np.ndarray, offsets: np.ndarray, cand: np.ndarray
) -> np.ndarray:
    """Float MaxSim over compressed tokens: ``maxsim`` of ``codec.decode(codes, packed)``, decoded on the fly."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    offsets, cand = _prepare(offsets, cand)
    if q.ndim != 2 or q.shape[1] != codec.dim:
        raise InvalidInputError(f"query tokens must be [nq, {codec.dim}], but got {q.shape}")
    if packed.ndim != 2 or packed.shape != (len(codes), codec.nbytes):
        raise InvalidInputError(f"packed residuals must be [{len(codes)}, {codec.nbytes}], but got {packed.shape}")
    if backend() == "numpy":
        _check(offsets, cand, len(codes))
        return maxsim_residual_reference(q, codec, codes, packed, offsets, cand)
    out = np.empty(len(cand), dtype=np.float32)
    if not len(cand):
        return out
    codes, packed = np.ascontiguousarray(codes, np.uint16), np.ascontiguousarray(packed, np.uint8)
    if codec.rotation is not None:  # the kernel works in the rotated axes: rotate the query once
        q = np.ascontiguousarray(q @ codec.rotation)
        _call(
            _c.maxsim_mixed,
            q,
            codes,
            packed,
            codec.kernel_centroids,
            codec.table,
            codec.widths,
            offsets,
            cand,
            out,
            q.shape[0],
            codec.dim,
            codec.nbytes,
            int(codec.unit),
        )
        return out
    _call(
        _c.maxsim_residual,
        q,
        codes,
        packed,
        codec.centroids,
        codec.lut(),
        offsets,
        cand,
        out,
        q.shape[0],
        codec.dim,
        codec.nbytes,
        8 // int(codec.nbits),
        int(codec.unit),
    )
    return out


def maxsim_codes(
    ct: np.ndarray, codes: np.ndarray, offsets: np.ndarray, cand: np.ndarray, nq: int | None = None
) -> np.ndarray:
    """Centroid-interaction MaxSim: each token scored by its centroid alone.

    ``ct`` is float32 ``[k, nq]``, ``centroids @ q.T``: token ``j`` of a passage scores
    ``ct[codes[j]]`` against the query tokens (PLAID's stage-2 approximation; no residual read).
    With ``nq`` given, only the first ``nq`` columns are query tokens and the rest padding: a
    table from ``pad_lanes`` is read a whole vector a row, ~1.5x as fast at 14 query tokens.
    """
    ct = np.ascontiguousarray(ct, dtype=np.float32)
    nq = ct.shape[1] if nq is None else nq
    if ct.ndim != 2 or not 0 < nq <= ct.shape[1]:
        raise InvalidInputError(f"a table of shape {ct.shape} cannot hold {nq} query tokens")
    offsets, cand = _prepare(offsets, cand)
    if backend() == "numpy":
        _check(offsets, cand, len(codes))
        return maxsim_codes_reference(ct[:, :nq], codes, offsets, cand)
    out = np.empty(len(cand), dtype=np.float32)
    if len(cand):
        codes = np.ascontiguousarray(codes, np.uint16)
        _call(_c.maxsim_codes, ct, codes, offsets, cand, out, nq, ct.shape[0], ct.shape[1])
    return out


def pad_lanes(ct: np.ndarray) -> np.ndarray:
    """``ct`` (float32 ``[k, nq]``) with its rows padded by zeros to a multiple of 8 columns, 32-byte
    aligned: the layout ``maxsim_codes`` reads whole AVX2 vectors from (pass ``nq`` with it).

    >>> pad_lanes(np.ones((2, 3), np.float32)).shape
    (2, 8)
    """
    k, nq = ct.shape
    stride = -(-nq // 8) * 8
    raw = np.zeros(k * stride + 8, np.float32)
    start = (-raw.ctypes.data % 32) // 4  # numpy aligns to 16 bytes; AVX2 loads want 32
    padded = raw[start : start + k * stride].reshape(k, stride)
    padded[:, :nq] = ct
    return padded


def dense4(table: np.ndarray, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Inner products of one query with 4-bit dense rows (``dense_codes.py``), float32 ``[m]``.

    ``rows``: uint8 ``[n, h + 4]``, ``h`` bytes of nibbles then the float32 step; ``table``:
    float32 ``[h, 256]``, what each byte value at each byte is worth against the query
    (``dense_codes.query_table``); ``positions``: int ``[m]``, the rows to score.
    """
    table = np.ascontiguousarray(table, np.float32)
    rows = np.ascontiguousarray(rows, np.uint8)
    positions = np.ascontiguousarray(positions, np.int64)
    h = table.shape[0] if table.ndim == 2 else -1
    if table.shape != (h, 256) or rows.ndim != 2 or rows.shape[1] != h + 4:
        raise InvalidInputError(f"a [h, 256] table needs [n, h + 4] rows, but got {table.shape} and {rows.shape}")
    if len(positions) and (positions.min() < 0 or positions.max() >= len(rows)):
        raise InvalidInputError(f"positions must lie in [0, {len(rows)})")
    if backend() == "numpy":
        return dense4_reference(table, rows, positions)
    out = np.empty(len(positions), np.float32)
    if len(positions):
        _call(_c.dense4, table, rows, positions, out, h)
    return out


def dense4_reference(table: np.ndarray, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The definition of ``dense4``: each row's bytes looked up in the table, summed, times its step."""
    picked = rows[positions]
    h = table.shape[0]
    step = np.ascontiguousarray(picked[:, h:]).view(np.float32)[:, 0]
    out: np.ndarray = table[np.arange(h), picked[:, :h]].sum(axis=1, dtype=np.float32) * step
    return out


def top_rows(table: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Each column's ``m`` best rows of ``table`` (float32 ``[k, nq]``), best first, a tie to the
    lower row: (rows int64 ``[m, nq]``, their values float32 ``[m, nq]``). A query token's best
    centroids, from the centroid-query table; one pass where a partial sort strides the columns.

    >>> top_rows(np.array([[0.1, 0.9], [0.5, 0.2], [0.5, 0.4]], np.float32), 2)[0]
    array([[1, 0],
           [2, 2]])
    """
    table = np.ascontiguousarray(table, np.float32)
    if table.ndim != 2 or not 0 < m <= table.shape[0] or not table.shape[1]:
        raise InvalidInputError(f"cannot take the {m} best rows of a table of shape {table.shape}")
    if backend() == "numpy":
        return top_rows_reference(table, m)
    k, nq = table.shape
    rows, best = np.empty((nq, m), np.int64), np.empty((nq, m), np.float32)
    _call(_c.top_rows, table, rows, best, k, nq, m)
    return rows.T.copy(), best.T.copy()


def top_rows_reference(table: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.argsort(-table, axis=0, kind="stable")[:m]
    return rows, np.take_along_axis(table, rows, axis=0)


def maxsim_residual_reference(
    q: np.ndarray, codec: ResidualCodec, codes: np.ndarray, packed: np.ndarray, offsets: np.ndarray, cand: np.ndarray
) -> np.ndarray:
    """The definition: float MaxSim over the decoded vectors."""
    out = np.empty(len(cand), dtype=np.float32)
    for i, c in enumerate(cand):
        rows = slice(offsets[c], offsets[c + 1])
        out[i] = (q @ codec.decode(codes[rows], packed[rows]).T).max(axis=1).sum()
    return out


CELL_BLOCK = 65536  # passages a block of the posting lists (postings.py): an id within one is a uint16


def cell_blocks(n: int) -> int:
    """How many blocks the posting lists of ``n`` passages are cut into (one at least)."""
    return max(1, -(-n // CELL_BLOCK))


def list_ids(starts: np.ndarray, lists: np.ndarray, cell: int, nb: int) -> np.ndarray:
    """Posting list ``cell``'s passage ids, ascending (int64): each block's offsets plus its base."""
    s = starts[cell * nb : (cell + 1) * nb + 1]
    ids: np.ndarray = np.repeat(np.arange(nb, dtype=np.int64) * CELL_BLOCK, np.diff(s)) + lists[s[0] : s[-1]]
    return ids


def cell_scores(
    cells: np.ndarray,
    gains: np.ndarray,
    starts: np.ndarray,
    lists: np.ndarray,
    n: int,
    limit: int,
    keep: int | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Centroid interaction of ``n`` passages from posting lists: (ids int32 ascending, scores
    float32) of the passages that score above 0.

    Row ``i`` of ``cells`` (int ``[nq, c]``) holds query token ``i``'s cells and ``gains``
    (finite, >= 0) what holding each is worth; passage ``p`` scores, summed over query tokens, the
    best gain of the token's cells whose list holds ``p``. The lists are cut into blocks of
    ``CELL_BLOCK`` passages (``postings.py``): list ``c``'s passages in block ``b`` are
    ``b * CELL_BLOCK + lists[starts[c * nb + b]:starts[c * nb + b + 1]]`` (uint16 offsets),
    ``nb = cell_blocks(n)``. Lists over ``limit`` passages are passed over. ``allowed`` (bool
    ``[n]``): only those passages are returned. ``keep``: only the ``keep`` best (ties to the
    lower id).

    >>> from colcade.engine.postings import Postings
    >>> p = Postings.from_lists(np.array([0, 1, 3, 4]), np.array([0, 0, 1, 1], np.int32), 2)
    >>> cell_scores(np.array([[1, 0]]), np.array([[0.5, 0.2]]), p.starts, p.lists, 2, limit=2)
    (array([0, 1], dtype=int32), array([0.5, 0.5], dtype=float32))
    >>> cell_scores(np.array([[1, 0]]), np.array([[0.5, 0.2]]), p.starts, p.lists, 2, limit=2, keep=1)
    (array([0], dtype=int32), array([0.5], dtype=float32))
    """
    cells = np.ascontiguousarray(cells, np.int64)
    gains = np.ascontiguousarray(gains, np.float32)
    starts = np.ascontiguousarray(starts, np.int64)
    lists = np.ascontiguousarray(lists, np.uint16)
    if cells.shape != gains.shape or cells.ndim != 2:
        raise InvalidInputError(f"cells and gains must be [nq, c] alike, but got {cells.shape} and {gains.shape}")
    if not 0 <= n <= np.iinfo(np.int32).max:
        raise InvalidInputError(f"n must be a passage count an int32 id can name, but got {n}")
    nb = cell_blocks(n)
    if starts.ndim != 1 or len(starts) < 1 or (len(starts) - 1) % nb:
        raise InvalidInputError(f"starts must be [k * {nb} + 1] for {n} passages, but got {starts.shape}")
    if not np.all(np.isfinite(gains)) or np.any(gains < 0):
        raise InvalidInputError("gains must be finite and at least 0")
    if keep is not None and keep < 0:
        raise InvalidInputError(f"keep must be at least 0, but got {keep}")
    if allowed is not None:
        allowed = np.ascontiguousarray(allowed, np.bool_)
        if allowed.shape != (n,):
            raise InvalidInputError(f"allowed must be [{n}] booleans, but got shape {allowed.shape}")
    if backend() == "numpy":
        return cell_scores_reference(cells, gains, starts, lists, n, limit, keep, allowed)
    keep = None if keep is None else min(int(keep), n)
    scratch, ids, scores = _cell_buffers(n if keep is None else min(n, 2 * keep + CELL_BLOCK))
    nq, c = cells.shape
    mask = allowed.view(np.uint8) if allowed is not None else np.zeros(0, np.uint8)
    args = (cells, gains, starts, lists, mask, scratch, ids, scores, nq, c, int(n), int(limit))
    m = _call(_c.cell_scores, *args, -1 if keep is None else keep)
    return ids[:m].copy(), scores[:m].copy()


_buffers = threading.local()


def _cell_buffers(room: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This thread's scratch for ``cell_scores``: two blocks of zeroed scores (the kernel hands them
    back zeroed) and room for ``room`` passages out, kept from query to query and grown as needed."""
    held = getattr(_buffers, "held", None)
    if held is None or len(held[1]) < room:
        scratch = held[0] if held is not None else np.zeros(2 * CELL_BLOCK, np.float32)
        held = _buffers.held = (scratch, np.empty(room, np.int32), np.empty(room, np.float32))
    scratch, ids, scores = held
    return scratch, ids[:room], scores[:room]


def cell_scores_reference(
    cells: np.ndarray,
    gains: np.ndarray,
    starts: np.ndarray,
    lists: np.ndarray,
    n: int,
    limit: int,
    keep: int | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The definition of ``cell_scores``, in numpy."""
    nb = cell_blocks(n)
    k = (len(starts) - 1) // nb
    acc = np.zeros(nb * CELL_BLOCK, np.float32)
    for row_cells, row_gains in zip(cells, gains):
        best = np.zeros_like(acc)
        for cell, gain in zip(row_cells, row_gains):
            if not 0 <= cell < k:
                raise InvalidInputError(f"cell {cell} names no list of the {k} given")
            s = starts[cell * nb : (cell + 1) * nb + 1]
            spans = np.diff(s)
            if s[0] < 0 or s[-1] > len(lists) or np.any(spans < 0) or np.any(spans > CELL_BLOCK):
                raise InvalidInputError(f"posting list {cell} is damaged (its block starts do not fit its ids)")
            if s[-1] - s[0] > limit or not gain > 0:
                continue
            np.maximum.at(best, list_ids(starts, lists, cell, nb), np.float32(gain))
        acc += best
    acc = acc[:n]
    met = acc > 0
    if allowed is not None:
        met &= allowed
    ids = np.flatnonzero(met).astype(np.int32)
    if keep is not None:
        ids = np.sort(ids[np.lexsort((ids, -acc[ids]))[:keep]])
    return ids, acc[ids]


def maxsim_codes_reference(ct: np.ndarray, codes: np.ndarray, offsets: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """The definition of centroid-interaction MaxSim, in numpy."""
    out = np.empty(len(cand), dtype=np.float32)
    for i, c in enumerate(cand):
        rows = np.asarray(codes[offsets[c] : offsets[c + 1]], np.int64)
        if len(rows) and rows.max() >= len(ct):
            raise InvalidInputError(f"a code is past the {len(ct)} centroids")
        out[i] = ct[rows].max(axis=0).sum()
    return out


def maxsim_reference(q: np.ndarray, tokens: np.ndarray, offsets: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """The definition of float MaxSim, in numpy; the compiled kernel must agree with it."""
    q = np.asarray(q, dtype=np.float32)
    out = np.empty(len(cand), dtype=np.float32)
    for i, c in enumerate(cand):
        passage = np.asarray(tokens[offsets[c] : offsets[c + 1]], dtype=np.float32)
        out[i] = (q @ passage.T).max(axis=1).sum()
    return out


_POPCOUNT = np.array([bin(b).count("1") for b in range(256)], dtype=np.int32)


def maxsim_hamming_reference(
    qbits: np.ndarray, bits: np.ndarray, offsets: np.ndarray, cand: np.ndarray, dim: int
) -> np.ndarray:
    """The definition of inverted-Hamming MaxSim, in numpy; the compiled kernel must agree with it."""
    out = np.empty(len(cand), dtype=np.int32)
    for i, c in enumerate(cand):
        passage = np.asarray(bits[offsets[c] : offsets[c + 1]])
        hamming = _POPCOUNT[qbits[:, None, :] ^ passage[None, :, :]].sum(axis=2)  # [nq, t]
        out[i] = (dim - hamming.min(axis=1)).sum()
    return out
