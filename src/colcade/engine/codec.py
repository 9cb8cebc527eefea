"""Compressed token vectors: a centroid id plus a few bits a dimension of residual (PLAID's coding).

A token vector ``v`` is stored as ``code`` (uint16: its nearest of ``k`` spherical k-means
centroids) and, for each dimension, ``nbits`` saying which quantile bucket the residual
``v - centroids[code]`` falls in; it is read back as ``centroids[code] + weights[dim, bucket]``
(``weights``: each bucket's mean residual, per dimension). At 2 bits that is ``d / 4 + 2`` bytes a
token: 98 at d=384 against 816 for float16 vectors plus sign bits.

When the vectors trained on are unit length (every encoder colcade ships normalizes its tokens),
the codec is ``unit``: a decoded vector is put back on the unit sphere. Its length error is pure
noise, and removing it cut the nDCG@10 lost to compression from 0.0044 to 0.0011 on SciFact's
train queries (the split used to choose it; benchmarks/compression.py reports every collection).

Scores need no decoding pass of their own: the kernels (``kernels.maxsim_codes`` and
``kernels.maxsim_residual``) read the codes directly, the residual through ``lut()``, a table of
the 4 (at 2 bits) reconstructed residual values of every byte value at every byte position (on
AVX-512, through each dimension's 4 bucket values, taken from it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from pathlib import Path

import faiss
import numpy as np

from colcade.errors import CorruptIndexError, InvalidInputError

# PLAID's rule asks for more centroids past 65k tokens; the cap keeps fitting them to ~15 s on
# 2 cores (a 16-per-centroid sample, 10 iterations). Set by build time, not by any collection's scores.
MAX_CENTROIDS = 4096
_BLOCK = 1 << 14  # tokens encoded at a time (memory stays bounded on any write: ~25 MB at d=384)


def centroid_count(n_tokens: int) -> int:
    """PLAID's rule, 2^floor(log2(16 sqrt(T))), capped at ``MAX_CENTROIDS`` and at the tokens there are.

    >>> centroid_count(100), centroid_count(10_000), centroid_count(1_000_000)
    (64, 1024, 4096)
    """
    k = 2 ** int(math.log2(16 * math.sqrt(max(1, n_tokens))))
    return int(max(1, min(k, MAX_CENTROIDS, 2 ** int(math.log2(max(1, n_tokens))))))


def spherical_kmeans(sample: np.ndarray, k: int, per_centroid: int, seed: int = 0) -> np.ndarray:
    """``k`` unit centroids fitted to (at most ``per_centroid`` points each of) ``sample``, 10
    iterations: codecs and the shortlist's lists need even, cheap clusters, not optimal ones."""
    kmeans = faiss.Kmeans(
        sample.shape[1],
        k,
        niter=10,
        spherical=True,
        seed=seed,
        max_points_per_centroid=per_centroid,
        min_points_per_centroid=1,
    )
    kmeans.train(np.ascontiguousarray(sample, np.float32))
    assert kmeans.centroids is not None
    return np.asarray(kmeans.centroids, np.float32)


class ResidualCodec:
    """Centroids, residual bucket cutoffs and bucket weights; immutable once trained."""

    def __init__(
        self,
        centroids: np.ndarray,
        cutoffs: np.ndarray,
        weights: np.ndarray,
        nbits: int,
        trained_on: int,
        unit: bool = False,
    ) -> None:
        if nbits not in (1, 2, 4, 8):
            raise InvalidInputError(f"nbits must be 1, 2, 4 or 8, but got {nbits}")
        self.centroids = np.ascontiguousarray(centroids, np.float32)
        self.cutoffs = np.ascontiguousarray(cutoffs, np.float32)  # [d, 2^nbits - 1], ascending per row
        self.weights = np.ascontiguousarray(weights, np.float32)  # [d, 2^nbits]
        self.nbits, self.trained_on, self.unit = nbits, int(trained_on), bool(unit)
        self.k, self.dim = self.centroids.shape
        if self.dim * nbits % 8:
            raise InvalidInputError(f"dim {self.dim} times {nbits} bits must fill whole bytes")
        self.nbytes = self.dim * nbits // 8  # residual bytes a token
        self._index: faiss.Index | None = None
        self._lut: np.ndarray | None = None

    @functools.cached_property
    def name(self) -> str:
        """A content hash: segments name the codec they were written with."""
        h = hashlib.sha256()
        for a in (self.centroids, self.cutoffs, self.weights):
            h.update(a.tobytes())
        h.update(bytes([self.nbits]))
        if self.unit:  # codecs saved before the flag existed keep their names
            h.update(b"unit")
        return "codec-" + h.hexdigest()[:16]

    @classmethod
    def train(cls, tokens: np.ndarray, n_tokens: int | None = None, nbits: int = 2, seed: int = 0) -> ResidualCodec:
        """Fit a codec to a sample of token vectors (``n_tokens``: how many the sample stands for)."""
        sample = np.ascontiguousarray(tokens, np.float32)
        if sample.ndim != 2 or not len(sample):
            raise InvalidInputError("a codec needs at least one token vector to train on")
        n = len(sample) if n_tokens is None else n_tokens
        unit = _unit_length(sample)
        k = centroid_count(min(n, len(sample)))
        # Stored as float16 (half the codec's size); rounded first, so residuals are measured
        # from the centroids as they will be read back.
        centroids = spherical_kmeans(sample, k, per_centroid=16, seed=seed).astype(np.float16).astype(np.float32)
        codec = cls(
            centroids, np.zeros((sample.shape[1], 2**nbits - 1)), np.zeros((sample.shape[1], 2**nbits)), nbits, n
        )
        # Residual statistics from at most 16k tokens: quantiles need no more, and memory stays small.
        if len(sample) > 1 << 14:
            sample = sample[np.random.default_rng(seed).choice(len(sample), 1 << 14, replace=False)]
        residual = sample - centroids[codec.assign(sample)]
        # Per dimension: cut at the residual's quantiles, and read each bucket back as its mean.
        qs = np.arange(1, 2**nbits) / 2**nbits
        cutoffs = np.quantile(residual, qs, axis=0).T.astype(np.float32)  # [d, 2^nbits - 1]
        buckets = _buckets(residual, cutoffs)
        weights = np.empty((sample.shape[1], 2**nbits), np.float32)
        for b in range(2**nbits):
            inside = buckets == b
            counts = inside.sum(axis=0)
            sums = np.where(inside, residual, 0).sum(axis=0)
            # An empty bucket (few distinct values) reads back as its cutoff's neighbourhood.
            edge = cutoffs[:, min(b, 2**nbits - 2)]
            weights[:, b] = np.where(counts > 0, sums / np.maximum(counts, 1), edge)
        return cls(centroids, cutoffs, weights, nbits, n, unit)

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """The nearest centroid (highest inner product) of each vector: uint16 ``[T]``."""
        if self._index is None:
            index = faiss.IndexFlatIP(self.dim)
            index.add(self.centroids)
            self._index = index
        out = np.empty(len(vectors), np.uint16)
        for start in range(0, len(vectors), _BLOCK):
            block = np.ascontiguousarray(vectors[start : start + _BLOCK], np.float32)
            _, found = self._index.search(block, 1)
            out[start : start + len(block)] = found[:, 0]
        return out

    def encode(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Codes uint16 ``[T]`` and packed residual buckets uint8 ``[T, nbytes]``."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidInputError(f"token vectors must be [T, {self.dim}], but got {vectors.shape}")
        if self.unit and not _unit_length(vectors):
            raise InvalidInputError(
                "this index codes unit-length token vectors (its codec puts decoded vectors back on the unit "
                "sphere), but some of these are not: normalize them (v / ||v||), or keep this index float16"
            )
        codes = self.assign(vectors)
        packed = np.empty((len(vectors), self.nbytes), np.uint8)
        for start in range(0, len(vectors), _BLOCK):
            block = np.asarray(vectors[start : start + _BLOCK], np.float32)
            residual = block - self.centroids[codes[start : start + len(block)]]
            packed[start : start + len(block)] = self._pack(_buckets(residual, self.cutoffs))
        return codes, packed

    def _pack(self, buckets: np.ndarray) -> np.ndarray:
        per_byte = 8 // self.nbits
        grouped = buckets.reshape(len(buckets), self.nbytes, per_byte).astype(np.uint8)
        out = np.zeros((len(buckets), self.nbytes), np.uint8)
        for j in range(per_byte):  # dimension j of a byte sits in its j-th highest bit group
            out |= grouped[:, :, j] << np.uint8(self.nbits * (per_byte - 1 - j))
        return out

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """Residual buckets uint8 ``[T, d]`` from packed bytes."""
        per_byte = 8 // self.nbits
        mask = np.uint8(2**self.nbits - 1)
        parts = [(packed >> np.uint8(self.nbits * (per_byte - 1 - j))) & mask for j in range(per_byte)]
        return np.stack(parts, axis=-1).reshape(len(packed), packed.shape[1] * per_byte)

    def decode(self, codes: np.ndarray, packed: np.ndarray) -> np.ndarray:
        """The stored vectors, float32 ``[T, d]`` (the reference the kernels are held to)."""
        buckets = self.unpack(np.asarray(packed))
        out: np.ndarray = self.centroids[np.asarray(codes, np.int64)] + self.weights[np.arange(self.dim), buckets]
        if self.unit:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-12))
        return out

    def lut(self) -> np.ndarray:
        """float32 ``[nbytes, 256, 8 / nbits]``: the residual values a byte holds, by byte position."""
        if self._lut is None:
            per_byte = 8 // self.nbits
            buckets = self.unpack(np.arange(256, dtype=np.uint8)[:, None])[:, :per_byte]  # [256, per_byte]
            dims = np.arange(self.nbytes)[:, None] * per_byte + np.arange(per_byte)  # [nbytes, per_byte]
            self._lut = np.ascontiguousarray(self.weights[dims[:, None, :], buckets[None, :, :]], np.float32)
        return self._lut

    def save(self, folder: Path) -> None:
        """Write to ``folder`` (a new folder, made whole before it appears: temp name, then rename)."""
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        np.save(tmp / "centroids.npy", self.centroids.astype(np.float16))  # exact: trained as float16 values
        np.save(tmp / "cutoffs.npy", self.cutoffs)
        np.save(tmp / "weights.npy", self.weights)
        info = {"nbits": self.nbits, "trained_on": self.trained_on, "unit": self.unit}
        (tmp / "codec.json").write_text(json.dumps(info))
        for f in tmp.iterdir():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        try:
            os.rename(tmp, folder)
        except OSError:  # another writer saved the same codec first: theirs is identical
            if not (folder / "codec.json").exists():
                raise
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
        fd = os.open(folder.parent, os.O_RDONLY)  # the rename itself survives a power cut
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, folder: Path) -> ResidualCodec:
        try:
            info = json.loads((folder / "codec.json").read_text())
            centroids, cutoffs, weights = (
                np.load(folder / f"{n}.npy", allow_pickle=False) for n in ("centroids", "cutoffs", "weights")
            )
            codec = cls(
                centroids,
                cutoffs,
                weights,
                nbits=int(info["nbits"]),
                trained_on=int(info["trained_on"]),
                unit=bool(info.get("unit", False)),
            )
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise CorruptIndexError(f"cannot read the codec in {folder}: {exc}. Rebuild the index.") from exc
        if codec.name != folder.name:
            raise CorruptIndexError(f"the codec in {folder} does not match its name; rebuild the index")
        return codec


def _unit_length(vectors: np.ndarray) -> bool:
    """Whether every vector is unit length (to 1e-2: float16 storage leaves ~1e-3)."""
    for start in range(0, len(vectors), _BLOCK):
        block = np.asarray(vectors[start : start + _BLOCK], np.float32)
        if not np.all(np.abs(np.einsum("ij,ij->i", block, block) - 1) < 2e-2):  # squared length: ~2x the error
            return False
    return True


def _buckets(residual: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """Bucket of each residual value: how many of its dimension's cutoffs it exceeds."""
    out = np.zeros(residual.shape, np.uint8)
    for j in range(cutoffs.shape[1]):
        out += residual > cutoffs[:, j]
    return out
