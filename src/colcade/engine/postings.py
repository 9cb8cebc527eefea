"""Token-level candidates: for each centroid of a codec, the passages holding a token coded to it.

PLAID's posting lists. A query token's best centroids point at the passages that hold a token
near it, which the pooled dense vector can miss (a passage whose tokens are not about one topic).
A compressed segment's lists are derived from its codes alone, so they are built once, on first
use, and saved beside the segment (``postings.npy`` and ``postings-starts.npy``); a missing or
damaged file is built again. About 2 bytes a token on real text (a passage repeats centroids).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colcade.engine.derived import derived
from colcade.engine.kernels import cell_scores

_FILES = ("postings.npy", "postings-starts.npy")


@dataclass(frozen=True)
class Postings:
    """Centroid ``c`` is in passages ``passages[starts[c]:starts[c + 1]]`` (local ids, ascending)."""

    starts: np.ndarray  # int64 [k + 1]
    passages: np.ndarray  # int32

    @classmethod
    def build(cls, codes: np.ndarray, offsets: np.ndarray, k: int) -> Postings:
        n = len(offsets) - 1
        codes = np.asarray(codes)
        owner = np.repeat(np.arange(n, dtype=np.int32), np.diff(offsets))
        # A stable sort of uint16 codes is a radix sort (linear); tokens come in passage order, so
        # within a centroid the passages ascend and repeats are neighbours.
        order = np.argsort(codes, kind="stable")
        centroid, passage = codes[order], owner[order]
        keep = np.ones(len(order), bool)
        keep[1:] = (centroid[1:] != centroid[:-1]) | (passage[1:] != passage[:-1])
        starts = np.searchsorted(centroid[keep], np.arange(k + 1)).astype(np.int64)
        return cls(starts, passage[keep])

    @classmethod
    def of(cls, folder: Path | None, codes: np.ndarray, offsets: np.ndarray, k: int, strict: bool = False) -> Postings:
        """A segment's postings: read from ``folder`` when whole, else built (and saved there;
        ``strict``, for the writer that builds them: a failure to save raises)."""
        n = len(offsets) - 1

        def build() -> tuple[np.ndarray, ...]:
            built = cls.build(codes, offsets, k)
            return built.passages, built.starts

        paths = None if folder is None else [folder / f for f in _FILES]
        passages, starts = derived(paths, lambda p, s: _whole(s, p, k, n), build, strict)
        return cls(starts, passages)

    def scores(self, cells: np.ndarray, gains: np.ndarray, n: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Centroid interaction read from the lists: row ``i`` of ``cells`` holds query token
        ``i``'s best centroids (best first), ``gains`` what holding each is worth; a passage gains,
        for each query token, the first (best) of its centroids it holds. Lists of more than
        ``limit`` passages are passed over (the centroids of [CLS], "the", "." that every passage
        holds, which rank nothing and would touch every passage). Returns (local ids, summed gains).

        >>> p = Postings.build(np.array([0, 1, 1, 2], np.uint16), np.array([0, 2, 4]), 3)
        >>> p.scores(np.array([[1, 0]]), np.array([[0.5, 0.2]]), 2, limit=2)
        (array([0, 1]), array([0.5, 0.5], dtype=float32))
        """
        acc = cell_scores(cells, gains, self.starts, self.passages, n, limit)
        touched = np.flatnonzero(acc > 0)
        return touched, acc[touched]

    def passages_of(self, cells: np.ndarray) -> np.ndarray:
        """Local ids of the passages under any of ``cells`` (with repeats)."""
        parts = [self.passages[self.starts[c] : self.starts[c + 1]] for c in cells]
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def _whole(starts: np.ndarray, passages: np.ndarray, k: int, n: int) -> bool:
    return (
        starts.dtype == np.int64
        and starts.shape == (k + 1,)
        and passages.dtype == np.int32
        and passages.ndim == 1
        and int(starts[0]) == 0
        and int(starts[-1]) == len(passages)
        and bool(np.all(np.diff(starts) >= 0))
        and (not len(passages) or (int(passages.min()) >= 0 and int(passages.max()) < n))
    )
