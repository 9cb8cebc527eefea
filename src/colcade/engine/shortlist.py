"""Stage 1: the dense shortlist, one vector per passage in FAISS (inner product).

Exact (``IndexFlatIP``) up to ``ivf_above`` passages; above it an inverted file
(``IndexIVFFlat``, about 4 sqrt(n) lists) whose probe count is sized from the shortlist
length, which keeps it well under a millisecond at 100k passages. A filtered search scores
exactly the allowed passages instead (a restricted IVF probe can come back short).
"""

from __future__ import annotations

import math
import mmap
import threading
from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np


class _Rows:
    """The dense vectors by position, as the segments hold them (memory-mapped on disk): no copy.

    ``take`` gathers rows for the few paths that need them (a filtered shortlist, IVF training).
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
                out[mask] = part[positions[mask] - self.bases[i]]
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


class DenseShortlist:
    """FAISS over the dense vectors, addressed by store position."""

    def __init__(self, dense_dim: int, ivf_above: int = 50_000) -> None:
        self.dense_dim = dense_dim
        self.ivf_above = ivf_above
        self.rows = _Rows(dense_dim)
        self.index: faiss.Index = faiss.IndexFlatIP(dense_dim)
        self.trained_on = 0
        self.names: list[str] = []  # the segments whose vectors it holds, in position order
        self._wanted: list[Any] = []  # the segments it is to hold (``names`` is a prefix of theirs)
        self._sync = threading.Lock()
        # FAISS may reallocate its storage on add: a search must not run meanwhile. Stage 1
        # is short, so only it is serialized; the kernels run in parallel.
        self.lock = threading.Lock()

    @property
    def kind(self) -> str:
        """``"flat"`` or ``"ivf"``: what the shortlist is once it holds every segment asked for."""
        self._catch_up()
        return self._kind()

    def _kind(self) -> str:
        return "ivf" if isinstance(self.index, faiss.IndexIVFFlat) else "flat"

    def covering(self, segments: Sequence[Any]) -> DenseShortlist:
        """A shortlist holding ``segments`` by position: this one, when they extend (or are a
        prefix of) the segments it is asked to hold (older states keep working: positions never
        move), else a new one. Vectors go into FAISS on the next search, not here: a process
        that only writes (``colcade index``) never pays for a copy of them.
        """
        names = [s.name for s in segments]
        with self._sync:
            wanted = [s.name for s in self._wanted]
            if names[: len(wanted)] == wanted or wanted[: len(names)] == names:
                if len(names) > len(wanted):
                    self._wanted = list(segments)
                return self
        fresh = DenseShortlist(self.dense_dim, self.ivf_above)
        return fresh.covering(segments)

    def _catch_up(self) -> None:
        """Add the vectors of segments asked for but not yet in FAISS."""
        if len(self.names) == len(self._wanted):  # the usual case on a search: no lock to take
            return
        with self._sync:
            for seg in self._wanted[len(self.names) :]:
                self.add(np.asarray(seg.dense))
                self.names.append(seg.name)

    def rebuild(self, dense: np.ndarray) -> None:
        self._rebuild(_Rows(self.dense_dim, [np.ascontiguousarray(dense, np.float32)]))

    def _rebuild(self, rows: _Rows) -> None:
        index = self._new_index(rows)
        for part in rows.parts:  # FAISS copies each part in; the parts themselves stay where they are
            index.add(np.ascontiguousarray(part, np.float32))
        with self.lock:
            self.rows, self.index = rows, index

    def add(self, dense: np.ndarray) -> None:
        rows = self.rows.plus(np.asarray(dense))  # as stored (float16 when compressed, mapped): no copy
        n = len(rows)
        # Switch to IVF (or retrain it) when the corpus has outgrown the current index.
        wants_ivf = n > self.ivf_above
        if wants_ivf != (self._kind() == "ivf") or (wants_ivf and n > 4 * self.trained_on):
            self._rebuild(rows)
        else:
            with self.lock:
                self.index.add(np.ascontiguousarray(dense, np.float32))
                self.rows = rows

    def _new_index(self, rows: _Rows) -> faiss.Index:
        n = len(rows)
        if n <= self.ivf_above:
            return faiss.IndexFlatIP(self.dense_dim)
        nlist = int(4 * math.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dense_dim), self.dense_dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = rows.take(np.sort(rng.choice(n, size=min(n, 64 * nlist), replace=False)))
        index.train(sample)
        self.trained_on = n
        return index

    def nbytes(self) -> int:
        """Memory held: FAISS's copy of the vectors (plus IVF lists' ids), and any in-RAM parts."""
        self._catch_up()
        index_bytes = self.index.ntotal * self.dense_dim * 4
        if isinstance(self.index, faiss.IndexIVFFlat):
            index_bytes += self.index.ntotal * 8 + self.index.nlist * self.dense_dim * 4
        return self.rows.nbytes() + index_bytes

    def search(self, query: np.ndarray, n: int, live: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """Sorted positions of the ``n`` best live passages, among ``allowed`` when given.

        ``live`` is the store's mask of passages not deleted; ``allowed`` a sorted array of
        positions that a filter lets through (tombstones already removed).
        """
        query = np.ascontiguousarray(query, np.float32).reshape(1, -1)
        self._catch_up()
        with self.lock:
            rows, index = self.rows, self.index
            if allowed is not None:
                if len(allowed) <= n:
                    return allowed
                scores = rows.take(allowed) @ query[0]
                top = np.argpartition(-scores, n - 1)[:n]
                return np.sort(allowed[top])
            params = None
            if isinstance(index, faiss.IndexIVFFlat):
                nprobe = max(8, math.ceil(index.nlist * 4 * n / max(1, len(rows))))
                params = faiss.SearchParametersIVF(nprobe=min(nprobe, index.nlist))  # type: ignore[call-arg]
            # Deleted passages stay in FAISS until compaction: fetch that many more, drop them.
            n_dead = len(live) - int(np.count_nonzero(live))
            _, found = index.search(query, min(n + n_dead, len(rows)), params=params)
        found = found[0]
        found = found[(found >= 0) & (found < len(live))]  # newer than the reader's snapshot
        return np.sort(found[live[found]][:n])
