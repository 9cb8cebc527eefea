"""Elias-Fano lists: ascending ids below a known ``universe`` in about 2 + log2(universe / count) bits each.

The posting lists' format (``postings.py``). An id's low ``l = floor(log2(universe / count))``
bits are packed one after another into 64-bit words; then its high part ``id >> l`` is written
in unary, as bit ``high + rank`` of the words that follow. Everything a reader needs besides the
words follows from ``(universe, count)``, so a list costs no header. On the posting lists of
real text (a centroid's list holds ~2% of the passages) that is ~7 bits an id against 32 for
int32 ids: 0.7 bytes a token instead of 3 at d=128.

This module is the numpy definition (the tests hold the C kernels in ``_kernels.c`` to it); the
kernels pack and decode the same words, bit for bit. Bit ``b`` of the words is bit ``b % 64`` of
word ``b // 64``, and words are stored little-endian.
"""

from __future__ import annotations

import numpy as np


def low_bits(universe: int, counts: np.ndarray) -> np.ndarray:
    """``floor(log2(universe / count))`` (0 for an empty list), in integers: int64 like ``counts``.

    >>> low_bits(1000, np.array([0, 1, 10, 500, 1000])).tolist()
    [0, 9, 6, 1, 0]
    """
    counts = np.asarray(counts, np.int64)
    ratio = universe / np.maximum(counts, 1)
    bits = np.floor(np.log2(np.maximum(ratio, 1))).astype(np.int64)
    # Settle float rounding at exact powers of two: the largest l with count * 2^l <= universe.
    bits += (counts << (bits + 1)) <= universe
    bits -= (bits > 0) & ((counts << bits) > universe)
    return np.where(counts > 0, bits, 0)


def words(universe: int, counts: np.ndarray) -> np.ndarray:
    """How many 64-bit words each list of ``counts`` ids takes (low parts, then high parts)."""
    counts = np.asarray(counts, np.int64)
    bits = low_bits(universe, counts)
    low = (counts * bits + 63) // 64
    high = (counts + (universe >> bits) + 1 + 63) // 64
    return np.where(counts > 0, low + high, 0)


def pack(ids: np.ndarray, universe: int) -> np.ndarray:
    """One list's words, uint64: the numpy definition of the ``ef_pack`` kernel.

    >>> unpack(pack(np.array([3, 9, 10]), 16), 3, 16).tolist()
    [3, 9, 10]
    """
    ids = np.asarray(ids, np.int64)
    count = len(ids)
    if not count:
        return np.zeros(0, np.uint64)
    bits = int(low_bits(universe, np.array([count]))[0])
    low_words = (count * bits + 63) // 64
    out = np.zeros(int(words(universe, np.array([count]))[0]) * 64, bool)
    if bits:
        out[: count * bits] = ((ids[:, None] >> np.arange(bits)) & 1).astype(bool).ravel()
    out[low_words * 64 + (ids >> bits) + np.arange(count)] = True
    return np.packbits(out, bitorder="little").view("<u8").astype(np.uint64)


def unpack(list_words: np.ndarray, count: int, universe: int) -> np.ndarray:
    """The ``count`` ids one list's words hold, int64 (no checks: callers check the result)."""
    if not count:
        return np.zeros(0, np.int64)
    bits = int(low_bits(universe, np.array([count]))[0])
    low_words = (count * bits + 63) // 64
    flat = np.unpackbits(np.asarray(list_words, "<u8").view(np.uint8), bitorder="little")
    low = flat[: count * bits].reshape(count, bits).astype(np.int64) @ (1 << np.arange(bits, dtype=np.int64))
    ones = np.flatnonzero(flat[low_words * 64 :])[:count]
    if len(ones) < count:
        return np.full(count, -1, np.int64)  # fewer ids than the count says: damaged
    result: np.ndarray = ((ones - np.arange(count)) << bits) | low
    return result
