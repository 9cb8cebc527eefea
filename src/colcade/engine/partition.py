"""The dense shortlist's inverted file: k-means centroids that split passages into lists.

Trained once on a sample of the dense vectors and saved under the index (``partitions/``),
so opening a large index reads it instead of training again. Each segment's passages are
assigned to lists once, in a file beside the segment (``lists-<partition>.npy``): an add costs
the assignment of its own passages, and an open costs reading those files.

The file name carries what a reader needs to choose among saved partitions without loading
them: ``p<trained_on>-<content hash>.npy``.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path

import faiss
import numpy as np

from colcade.engine import dense_codes
from colcade.engine.codec import spherical_kmeans
from colcade.engine.derived import write_array
from colcade.errors import CorruptIndexError

_NAME = re.compile(r"^p(\d+)-([0-9a-f]{16})\.npy$")
_BLOCK = 1 << 15  # passages assigned at a time: memory stays bounded on any segment


def list_count(n: int) -> int:
    """About 4 sqrt(n) lists, the usual IVF rule (a list holds ~sqrt(n) / 4 passages).

    >>> list_count(100_000), list_count(1_000_000)
    (1264, 4000)
    """
    return max(1, int(4 * math.sqrt(n)))


class Partition:
    """Centroids [nlist, d] (float32) and how many passages the index held when they were trained."""

    def __init__(self, centroids: np.ndarray, trained_on: int) -> None:
        self.centroids = np.ascontiguousarray(centroids, np.float32)
        self.trained_on = int(trained_on)
        self.nlist, self.dim = self.centroids.shape
        digest = hashlib.sha256(self.centroids.tobytes()).hexdigest()[:16]
        self.name = f"p{self.trained_on}-{digest}"
        self._index = faiss.IndexFlatIP(self.dim)
        self._index.add(self.centroids)

    @classmethod
    def train(cls, sample: np.ndarray, n: int, seed: int = 0) -> Partition:
        """Fit ``list_count(n)`` spherical centroids to ``sample`` (drawn from ``n`` dense vectors)."""
        sample = np.ascontiguousarray(sample, np.float32)
        k = min(list_count(n), len(sample))
        # 10 iterations on at most 40 points a list: IVF lists need to be roughly even, not
        # optimal, and this keeps training to seconds at a million passages.
        return cls(spherical_kmeans(sample, k, per_centroid=40, seed=seed), n)

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """The list of each vector (its best centroid by inner product), int32, block by block
        (``vectors`` as a segment stores them: float, or 4- or 8-bit codes)."""
        out = np.empty(len(vectors), np.int32)
        for start in range(0, len(vectors), _BLOCK):
            block = np.ascontiguousarray(dense_codes.decode(vectors[start : start + _BLOCK]))
            _, best = self._index.search(block, 1)
            out[start : start + len(block)] = best[:, 0]
        return out

    def probe(self, query: np.ndarray, nprobe: int) -> np.ndarray:
        """The ``nprobe`` lists whose centroids score best against ``query``."""
        _, best = self._index.search(np.ascontiguousarray(query, np.float32).reshape(1, -1), nprobe)
        found: np.ndarray = best[0]
        return found[found >= 0]

    # ------------------------------------------------------------------ on disk
    def save(self, folder: Path) -> None:
        """Write ``folder/<name>.npy`` whole or not at all (temp file, fsync, rename)."""
        folder.mkdir(exist_ok=True)
        write_array(folder / f"{self.name}.npy", self.centroids)

    @staticmethod
    def saved(folder: Path) -> dict[str, int]:
        """Saved partitions by name, with the index size each was trained at (nothing is loaded)."""
        try:
            entries = os.listdir(folder)
        except FileNotFoundError:
            return {}
        found = (_NAME.match(e) for e in entries)
        return {m.group(0)[:-4]: int(m.group(1)) for m in found if m}

    @classmethod
    def load(cls, folder: Path, name: str) -> Partition:
        path = folder / f"{name}.npy"
        match = _NAME.match(path.name)
        try:
            partition = cls(np.load(path, allow_pickle=False), int(match.group(1)) if match else 0)
        except FileNotFoundError:
            raise
        except Exception as exc:  # EOFError, ValueError, a wrong shape: all mean a damaged file
            raise CorruptIndexError(f"cannot read {path}: {exc}; delete it (it is rebuilt on the next search)") from exc
        if partition.name != name:
            raise CorruptIndexError(f"{path} does not match its name; delete it (it is rebuilt on the next search)")
        return partition
