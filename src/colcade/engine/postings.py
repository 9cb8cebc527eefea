"""Token-level candidates: for each centroid of a codec, the passages holding a token coded to it.

PLAID's posting lists. A query token's best centroids point at the passages that hold a token
near it, which the pooled dense vector can miss (a passage whose tokens are not about one topic).
A compressed segment's lists are derived from its codes alone: the writer builds them and saves
them beside the segment (``postings-ids.npy``, ``postings-blocks.npy``); a missing or damaged
file is built again.

The lists are cut into blocks of ``CELL_BLOCK`` (65,536) passages and an id is stored as its
offset in its block, a uint16: ~1.5 bytes a token on real text at d=128 (a passage repeats
centroids, so a list holds fewer ids than tokens). The ``cell_scores`` kernel reads every list a
block at a time, so the block's scores stay in cache: an id costs a load and a max. Elias-Fano
ids (0.7 bytes a token, the format before) took ~7 ns each to decode and count once per query
token, this ~1.5 ns. Segments written before kept ``postings-ef.npy`` / ``postings-heads.npy``
(or, earlier, ``postings.npy`` / ``postings-starts.npy``): readers build the new files from the
codes and remove the old.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colcade.engine.derived import derived
from colcade.engine.kernels import CELL_BLOCK, cell_blocks, cell_scores, list_ids
from colcade.errors import InvalidInputError

_FILES = ("postings-ids.npy", "postings-blocks.npy")
_LEGACY = ("postings-ef.npy", "postings-heads.npy", "postings.npy", "postings-starts.npy")  # the formats before


@dataclass(frozen=True)
class Postings:
    """Centroid ``c``'s passages in block ``b`` (local ids, ascending) are
    ``b * CELL_BLOCK + lists[starts[c * nb + b]:starts[c * nb + b + 1]]``, ``nb = cell_blocks(n)``."""

    starts: np.ndarray  # int64 [k * nb + 1]
    lists: np.ndarray  # uint16: an id's offset in its block
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
        del order, owner
        keep = np.ones(len(centroid), bool)
        keep[1:] = (centroid[1:] != centroid[:-1]) | (passage[1:] != passage[:-1])
        return cls._cut(centroid[keep], passage[keep], k, n)

    @classmethod
    def from_lists(cls, starts: np.ndarray, passages: np.ndarray, n: int) -> Postings:
        """Lists given plainly (list ``c``: ``passages[starts[c]:starts[c + 1]]``, ascending ids below ``n``)."""
        starts, passages = np.asarray(starts, np.int64), np.asarray(passages, np.int64)
        if starts[0] != 0 or starts[-1] != len(passages) or np.any(np.diff(starts) < 0):
            raise InvalidInputError(f"starts must ascend from 0 to the {len(passages)} passages given")
        lists = np.repeat(np.arange(len(starts) - 1, dtype=np.int64), np.diff(starts))
        step = np.diff(passages)[lists[1:] == lists[:-1]]
        if len(passages) and (passages.min() < 0 or passages.max() >= n or np.any(step <= 0)):
            raise InvalidInputError(f"each list must hold ascending ids below {n}")
        return cls._cut(lists, passages, len(starts) - 1, n)

    @classmethod
    def _cut(cls, centroid: np.ndarray, passage: np.ndarray, k: int, n: int) -> Postings:
        """Entries sorted by (centroid, passage), one a pair, cut into blocks."""
        nb = cell_blocks(n)
        # Each (list, block) pair's first entry: the entries ascend, so one sorted key orders them all.
        key = centroid.astype(np.int64) * nb + passage // CELL_BLOCK
        blocks = np.searchsorted(key, np.arange(k * nb + 1)).astype(np.int64)
        return cls(blocks, (passage % CELL_BLOCK).astype(np.uint16), n)

    @classmethod
    def of(cls, folder: Path | None, codes: np.ndarray, offsets: np.ndarray, k: int, strict: bool = False) -> Postings:
        """A segment's postings: read from ``folder`` when whole, else built (and saved there;
        ``strict``, for the writer that builds them: a failure to save raises)."""
        n = len(offsets) - 1

        def build() -> tuple[np.ndarray, ...]:
            built = cls.build(codes, offsets, k)
            if folder is not None:  # lists of the formats this replaces: best effort (read-only keeps them)
                for name in _LEGACY:
                    try:
                        (folder / name).unlink(missing_ok=True)
                    except OSError:
                        pass
            return built.lists, built.starts

        paths = None if folder is None else [folder / f for f in _FILES]
        lists, starts = derived(paths, lambda li, st: _whole(li, st, k, n), build, strict)
        return cls(starts, lists, n)

    def __len__(self) -> int:
        """How many (centroid, passage) pairs the lists hold."""
        return int(self.starts[-1])

    def passages(self, cell: int) -> np.ndarray:
        """Local ids of the passages under centroid ``cell``, ascending (int64)."""
        return list_ids(self.starts, self.lists, cell, cell_blocks(self.n))

    def scores(
        self,
        cells: np.ndarray,
        gains: np.ndarray,
        limit: int,
        keep: int | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Centroid interaction read from the lists: row ``i`` of ``cells`` holds query token
        ``i``'s best centroids, ``gains`` what holding each is worth (>= 0); a passage gains, for
        each query token, the best of its centroids it holds. Lists of more than ``limit``
        passages are passed over (the centroids of [CLS], "the", "." that every passage holds,
        which rank nothing and would touch every passage). Returns (local ids ascending, summed
        gains) of the passages that gained; ``allowed`` (bool ``[n]``) only those, ``keep`` only
        the best so many (``kernels.cell_scores``).

        >>> p = Postings.build(np.array([0, 1, 1, 2], np.uint16), np.array([0, 2, 4]), 3)
        >>> p.scores(np.array([[1, 0]]), np.array([[0.5, 0.2]]), limit=2)
        (array([0, 1], dtype=int32), array([0.5, 0.5], dtype=float32))
        """
        return cell_scores(cells, gains, self.starts, self.lists, self.n, limit, keep, allowed)


def _whole(lists: np.ndarray, starts: np.ndarray, k: int, n: int) -> bool:
    """Whether saved lists fit their segment: the starts ascend inside the ids, and no block of a
    list holds more ids than the block has passages. (An id is an offset into its block's scores,
    so a damaged one cannot read out of bounds; it would cost candidates, never a wrong score.)"""
    nb = cell_blocks(n)
    if lists.dtype != np.uint16 or lists.ndim != 1 or starts.dtype != np.int64 or starts.shape != (k * nb + 1,):
        return False
    spans = np.diff(starts)
    return int(starts[0]) == 0 and int(starts[-1]) == len(lists) and bool(np.all((spans >= 0) & (spans <= CELL_BLOCK)))
