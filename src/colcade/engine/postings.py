"""Token-level candidates: for each centroid of a codec, the passages holding a token coded to it.

PLAID's posting lists. A query token's best centroids point at the passages that hold a token
near it, which the pooled dense vector can miss (a passage whose tokens are not about one topic).
A compressed segment's lists are derived from its codes alone: the writer builds them and saves
them beside the segment (``postings-ef.npy``, ``postings-heads.npy``); a missing or damaged file
is built again. Stored in Elias-Fano form (``eliasfano.py``): ~0.7 bytes a token on real text at
d=128, where int32 ids took ~3 (a passage repeats centroids, so a list holds fewer ids than tokens).
Segments written before that kept ``postings.npy`` / ``postings-starts.npy``: readers build the
new files from the codes and remove the old ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colcade.engine import eliasfano
from colcade.engine.derived import derived
from colcade.engine.kernels import cell_scores, ef_pack

_FILES = ("postings-ef.npy", "postings-heads.npy")
_LEGACY = ("postings.npy", "postings-starts.npy")  # int32 ids, before the lists were compressed


@dataclass(frozen=True)
class Postings:
    """Centroid ``c`` is in ``heads[0, c + 1] - heads[0, c]`` passages (local ids, ascending),
    Elias-Fano coded in ``blob[heads[1, c]:heads[1, c + 1]]`` against the segment's ``n`` passages."""

    heads: np.ndarray  # int64 [2, k + 1]: ids before list c, words before list c
    blob: np.ndarray  # uint64
    n: int

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
        return cls.pack(starts, passage[keep], n)

    @classmethod
    def pack(cls, starts: np.ndarray, passages: np.ndarray, n: int) -> Postings:
        """Lists given plainly (list ``c``: ``passages[starts[c]:starts[c + 1]]``, ascending), packed."""
        words, blob = ef_pack(starts, passages, n)
        return cls(np.stack([np.asarray(starts, np.int64), words]), blob, n)

    @classmethod
    def of(cls, folder: Path | None, codes: np.ndarray, offsets: np.ndarray, k: int, strict: bool = False) -> Postings:
        """A segment's postings: read from ``folder`` when whole, else built (and saved there;
        ``strict``, for the writer that builds them: a failure to save raises)."""
        n = len(offsets) - 1

        def build() -> tuple[np.ndarray, ...]:
            built = cls.build(codes, offsets, k)
            if folder is not None:  # lists of the int32 form this replaces: best effort (read-only keeps them)
                for name in _LEGACY:
                    try:
                        (folder / name).unlink(missing_ok=True)
                    except OSError:
                        pass
            return built.blob, built.heads

        paths = None if folder is None else [folder / f for f in _FILES]
        blob, heads = derived(paths, lambda b, h: _whole(b, h, k, n), build, strict)
        return cls(heads, blob, n)

    def __len__(self) -> int:
        """How many (centroid, passage) pairs the lists hold."""
        return int(self.heads[0, -1])

    def passages(self, cell: int) -> np.ndarray:
        """Local ids of the passages under centroid ``cell``, ascending (int64)."""
        count = int(self.heads[0, cell + 1] - self.heads[0, cell])
        return eliasfano.unpack(self.blob[self.heads[1, cell] : self.heads[1, cell + 1]], count, self.n)

    def scores(
        self,
        cells: np.ndarray,
        gains: np.ndarray,
        limit: int,
        keep: int | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Centroid interaction read from the lists: row ``i`` of ``cells`` holds query token
        ``i``'s best centroids (best first), ``gains`` what holding each is worth; a passage gains,
        for each query token, the first (best) of its centroids it holds. Lists of more than
        ``limit`` passages are passed over (the centroids of [CLS], "the", "." that every passage
        holds, which rank nothing and would touch every passage). Returns (local ids, summed
        gains) of the passages met, in no particular order; ``allowed`` (bool ``[n]``) only those,
        ``keep`` only the best so many, ids ascending (``kernels.cell_scores``).

        >>> p = Postings.build(np.array([0, 1, 1, 2], np.uint16), np.array([0, 2, 4]), 3)
        >>> p.scores(np.array([[1, 0]]), np.array([[0.5, 0.2]]), limit=2)
        (array([0, 1], dtype=int32), array([0.5, 0.5], dtype=float32))
        """
        return cell_scores(cells, gains, self.heads, self.blob, self.n, limit, keep, allowed)


def _whole(blob: np.ndarray, heads: np.ndarray, k: int, n: int) -> bool:
    """Whether saved lists fit their segment (each list's ids are checked as it is decoded)."""
    if blob.dtype != np.uint64 or blob.ndim != 1 or heads.dtype != np.int64 or heads.shape != (2, k + 1):
        return False
    counts, starts = np.diff(heads[0]), np.diff(heads[1])
    return (
        int(heads[0, 0]) == 0
        and int(heads[1, 0]) == 0
        and int(heads[1, -1]) == len(blob)
        and bool(np.all(counts >= 0))
        and bool(np.all(counts <= n))
        and bool(np.array_equal(starts, eliasfano.words(n, counts)))
    )
