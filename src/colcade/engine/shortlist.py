"""Stage 1: the dense shortlist, one vector per passage, scored by inner product.

Up to ``ivf_above`` passages it is exact (FAISS ``IndexFlatIP``, which holds a float32 copy of
the vectors: at most ``ivf_above`` of them). Above, an inverted file (``partition.py``): about
4 sqrt(n) k-means lists, whose probe count is sized from the shortlist length, scoring the probed
lists' passages straight from the segments' (memory-mapped) dense vectors. Nothing is copied,
and the centroids and each segment's list assignments are saved beside the index, so opening a
large index reads them instead of training (the old FAISS IVF retrained on every open).
A filtered search scores exactly the allowed passages instead (a restricted probe can come
back short).
"""

from __future__ import annotations

import math
import mmap
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from colcade.engine import dense_codes
from colcade.engine.derived import derived
from colcade.engine.partition import Partition, list_count
from colcade.errors import CorruptIndexError

IVF_ABOVE = 50_000  # passages: exact up to here, an inverted file above


class _Rows:
    """The dense vectors by position, as the segments hold them (memory-mapped on disk): no copy.

    ``scores`` scores rows where they lie (a probe's lists, a filtered shortlist); ``take`` gathers
    them as float32 for IVF training.
    """

    def __init__(self, dim: int, parts: Sequence[np.ndarray] = ()) -> None:
        self.dim = dim
        self.parts = [p for p in parts if len(p)]
        self.bases = np.cumsum([0] + [len(p) for p in self.parts]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.bases[-1])

    def plus(self, part: np.ndarray) -> _Rows:
        return _Rows(self.dim, [*self.parts, part])

    def take(self, positions: np.ndarray) -> np.ndarray:
        out = np.empty((len(positions), self.dim), np.float32)
        which = np.searchsorted(self.bases, positions, side="right") - 1
        for i, part in enumerate(self.parts):
            mask = which == i
            if mask.any():
                out[mask] = dense_codes.decode(part[positions[mask] - self.bases[i]])
        return out

    def scores(self, positions: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Inner products of ``query`` with the rows at ``positions``, scored where they lie."""
        out = np.empty(len(positions), np.float32)
        which = np.searchsorted(self.bases, positions, side="right") - 1
        for i, part in enumerate(self.parts):
            mask = which == i
            if mask.any():
                out[mask] = dense_codes.scores(part, positions[mask] - self.bases[i], query)
        return out

    def nbytes(self) -> int:
        """Bytes in RAM (memory-mapped parts live in the page cache, not here)."""
        return sum(p.nbytes for p in self.parts if not _mapped(p))


def _mapped(array: Any) -> bool:
    """Whether an array's memory is a file mapping (np.load(..., mmap_mode="r") and views of it)."""
    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
    return False


@dataclass(frozen=True)
class _Inverted:
    """Positions grouped by list: list ``l`` holds ``order[starts[l]:starts[l + 1]]`` (ascending)."""

    partition: Partition
    lists: tuple[np.ndarray, ...]  # per segment: the list of each of its passages
    order: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, partition: Partition, lists: Sequence[np.ndarray]) -> _Inverted:
        assign = np.concatenate(lists) if lists else np.zeros(0, np.int32)
        order = np.argsort(assign, kind="stable")
        starts = np.zeros(partition.nlist + 1, np.int64)
        np.cumsum(np.bincount(assign, minlength=partition.nlist), out=starts[1:])
        return cls(partition, tuple(lists), order, starts)

    def probe(self, query: np.ndarray, n: int, live: np.ndarray) -> np.ndarray:
        """Live positions in the lists probed for a shortlist of ``n``: about 4n live passages'
        worth of lists (at least 8), and twice as many lists again while fewer than ``n`` turn up
        (deleted passages stay in their lists until compaction)."""
        nlist = self.partition.nlist
        n_live = max(1, int(np.count_nonzero(live)))
        nprobe = min(nlist, max(8, math.ceil(nlist * 4 * n / n_live)))
        while True:
            chosen = self.partition.probe(query, nprobe)
            found: np.ndarray = np.concatenate([self.order[self.starts[c] : self.starts[c + 1]] for c in chosen])
            found = found[found < len(live)]  # newer than the reader's snapshot
            found = found[live[found]]
            if len(found) >= n or nprobe >= nlist:
                return found
            nprobe = min(nlist, 2 * nprobe)

    def fits(self) -> bool:
        """Whether the partition still fits the vectors. One trained on other content (an index
        emptied and filled again) leaves most lists empty and a few huge, and a probe would score
        most of the index. Measured as the size of the list an average passage falls in, against
        even lists: 1.5-1.7x for a fresh partition of clustered vectors; refused past 4x."""
        sizes = np.diff(self.starts).astype(np.float64)
        n = float(sizes.sum())
        if not n:
            return True
        uneven = float((sizes**2).sum()) / n / (n / len(sizes))
        return bool(np.count_nonzero(sizes) >= len(sizes) // 2 and uneven <= 4.0)

    def nbytes(self) -> int:
        mapped = sum(a.nbytes for a in self.lists if not _mapped(a))
        return self.partition.centroids.nbytes + self.order.nbytes + self.starts.nbytes + mapped


class DenseShortlist:
    """The dense vectors of an index's segments, addressed by store position.

    ``partitions`` and ``segments`` are the index's folders for saved partitions and segments
    (None in memory: partitions and list assignments are then computed and kept in RAM).
    """

    def __init__(
        self,
        dense_dim: int,
        ivf_above: int = IVF_ABOVE,
        partitions: Path | None = None,
        segments: Path | None = None,
    ) -> None:
        self.dense_dim = dense_dim
        self.ivf_above = ivf_above
        self.partitions, self.segments = partitions, segments
        self.rows = _Rows(dense_dim)
        self.flat: faiss.Index | None = faiss.IndexFlatIP(dense_dim)
        self.inverted: _Inverted | None = None
        self.names: list[str] = []  # the segments whose vectors it holds, in position order
        self._wanted: list[Any] = []  # the segments it is to hold (``names`` is a prefix of theirs)
        self._held: list[Any] = []
        self._sync = threading.Lock()
        # FAISS may reallocate its storage on add: a search must not run meanwhile. Stage 1
        # is short, so only it is serialized; the kernels run in parallel.
        self.lock = threading.Lock()

    @property
    def kind(self) -> str:
        """``"flat"`` or ``"ivf"``: what the shortlist is once it holds every segment asked for."""
        self._catch_up()
        return "ivf" if self.inverted is not None else "flat"

    def covering(self, segments: Sequence[Any]) -> DenseShortlist:
        """A shortlist holding ``segments`` by position: this one, when they extend (or are a
        prefix of) the segments it is asked to hold (older states keep working: positions never
        move), else a new one. Vectors are taken in on the next search, not here: a process
        that only writes (``colcade index``) never pays for them.
        """
        names = [s.name for s in segments]
        with self._sync:
            wanted = [s.name for s in self._wanted]
            if names[: len(wanted)] == wanted or wanted[: len(names)] == names:
                if len(names) > len(wanted):
                    self._wanted = list(segments)
                return self
        fresh = DenseShortlist(self.dense_dim, self.ivf_above, self.partitions, self.segments)
        return fresh.covering(segments)

    def _catch_up(self) -> None:
        """Take in the segments asked for but not yet held."""
        if len(self.names) == len(self._wanted):  # the usual case on a search: no lock to take
            return
        with self._sync:
            new = self._wanted[len(self.names) :]
            if new:
                self._add(new)
                self.names.extend(s.name for s in new)

    def _add(self, segments: Sequence[Any]) -> None:
        rows = self.rows
        for seg in segments:
            rows = rows.plus(np.asarray(seg.dense))  # as stored (4-bit codes when compressed, mapped): no copy
        held = [*self._held, *segments]
        n = len(rows)
        if n <= self.ivf_above:
            # A shortlist only grows (compaction makes a new one), so below the threshold it is flat.
            assert self.flat is not None
            with self.lock:
                for seg in segments:
                    self.flat.add(np.ascontiguousarray(dense_codes.decode(seg.dense)))
                self.rows, self._held = rows, held
            return
        inverted = self.inverted
        if inverted is None or n > 4 * inverted.partition.trained_on:  # a partition for this size
            partition = self._partition_for(rows)
            lists = [self._lists(seg, partition) for seg in held]
        else:
            partition = inverted.partition
            lists = [*inverted.lists, *(self._lists(seg, partition) for seg in segments)]
        inverted = _Inverted.of(partition, lists)
        if not inverted.fits():  # trained on content that has since gone: train on this content
            self._forget(partition)
            partition = self._partition_for(rows, fresh=True)
            inverted = _Inverted.of(partition, [self._lists(seg, partition) for seg in held])
        with self.lock:
            self.rows, self.flat, self.inverted, self._held = rows, None, inverted, held

    def _partition_for(self, rows: _Rows, fresh: bool = False) -> Partition:
        """A saved partition trained at >= a quarter of this size (the largest), else (or when
        ``fresh``) a new one, saved."""
        n = len(rows)
        if self.partitions is not None and not fresh:
            saved = {name: t for name, t in Partition.saved(self.partitions).items() if 4 * t >= n}
            for name in sorted(saved, key=lambda name: -saved[name]):
                try:
                    partition = Partition.load(self.partitions, name)
                except FileNotFoundError:
                    continue
                except CorruptIndexError:  # damaged: drop it, or every open would try it first
                    self._forget(name)
                    continue
                if partition.dim == self.dense_dim:
                    return partition
        rng = np.random.default_rng(0)
        sample = rows.take(np.sort(rng.choice(n, size=min(n, 40 * list_count(n)), replace=False)))
        partition = Partition.train(sample, n)
        if self.partitions is not None:
            try:
                partition.save(self.partitions)
            except OSError:  # a read-only index: the partition serves this process all the same
                pass
        return partition

    def _forget(self, partition: Partition | str) -> None:
        """Remove a saved partition that must not be chosen again (damaged, or fitted to other content)."""
        if self.partitions is not None:
            name = partition if isinstance(partition, str) else partition.name
            try:
                (self.partitions / f"{name}.npy").unlink(missing_ok=True)
            except OSError:  # read-only: this process trains its own all the same
                pass

    def _lists(self, seg: Any, partition: Partition) -> np.ndarray:
        """Each passage's list in ``seg``: read from beside the segment, else assigned and saved there."""

        def whole(lists: np.ndarray) -> bool:
            if lists.shape != (seg.n,) or lists.dtype != np.int32:
                return False
            return not len(lists) or (int(lists.min()) >= 0 and int(lists.max()) < partition.nlist)

        path = None if self.segments is None else [self.segments / seg.name / f"lists-{partition.name}.npy"]
        (lists,) = derived(path, whole, lambda: (partition.assign(seg.dense),))
        return lists

    def nbytes(self) -> int:
        """Memory held: the flat index's copy of the vectors, or the inverted file's arrays."""
        self._catch_up()
        held = self.flat.ntotal * self.dense_dim * 4 if self.flat is not None else 0
        if self.inverted is not None:
            held += self.inverted.nbytes()
        return self.rows.nbytes() + held

    def search(self, query: np.ndarray, n: int, live: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """Sorted positions of the ``n`` best live passages, among ``allowed`` when given.

        ``live`` is the store's mask of passages not deleted; ``allowed`` a sorted array of
        positions that a filter lets through (tombstones already removed).
        """
        query = np.ascontiguousarray(query, np.float32).reshape(1, -1)
        self._catch_up()
        with self.lock:
            rows, flat, inverted = self.rows, self.flat, self.inverted
            if allowed is None and flat is not None:
                # Deleted passages stay in FAISS until compaction: fetch that many more, drop them.
                n_dead = len(live) - int(np.count_nonzero(live))
                _, found = flat.search(query, min(n + n_dead, len(rows)))
                found = found[0]
                found = found[(found >= 0) & (found < len(live))]  # newer than the reader's snapshot
                return np.sort(found[live[found]][:n])
        if allowed is None:
            assert inverted is not None
            allowed = inverted.probe(query[0], n, live)
        if len(allowed) <= n:
            return np.sort(allowed)
        scores = rows.scores(allowed, query[0])
        top = np.argpartition(-scores, n - 1)[:n]
        return np.sort(allowed[top])
