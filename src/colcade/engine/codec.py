"""Compressed token vectors: a centroid id plus a few bits a dimension of residual (PLAID's coding).

A token vector ``v`` is stored as ``code`` (uint16: its nearest of ``k`` spherical k-means
centroids) and, for each dimension, a few bits saying which quantile bucket the residual
``v - centroids[code]`` falls in; it is read back as ``centroids[code] + weights[dim, bucket]``
(``weights``: each bucket's mean residual, per dimension).

By default the residual is first **rotated** onto its principal axes (a [d, d] rotation fitted
with the centroids), and each block of 16 axes gets 0, 1, 2 or 4 bits by its variance, within
``nbits`` bits a dimension on average (1.75 by default: 84 bytes at d=384, plus the 2-byte code).
Real residuals are far from isotropic (their covariance's eigenvalues span ~100x), so bits
given where the variance is lose less than the same bits in every dimension:
benchmarks/rotation.py measures fidelity@10 to float MaxSim 0.924 at 1.75 bits rotated against
0.912 at 2 bits in every dimension, on SciFact's train queries (the split the default was
chosen on). Dot products need no decoding back: a query is rotated by the same matrix, so the
kernels score in the rotated axes. A rotated codec stores its centroids in int8, a step a
dimension (a 4,096-centroid codec is 1.5 MB at d=384, where float16 took 3 MB).

Up to 4,096 centroids (``FLAT_CENTROIDS``) a token's code is its best of all of them. A larger
index (past ~2 M tokens: one centroid for at least 256 tokens, up to 65,536) gets a **two-level
codebook**: ~sqrt(k) coarse centroids, each with as many leaves fitted to the tokens it holds,
and a token is coded to the best leaf of its best coarse centroid. Coding then takes ~2 sqrt(k)
products a token instead of k (5x faster at 16,384 than a flat search of 4,096), and finer
centroids leave smaller residuals and shorter posting lists. Everything that reads codes sees
``k`` centroids as before; the coarse level serves coding alone.

Codecs of the earlier coding (``nbits`` bits in every dimension, no rotation, float16
centroids) still load and score as before; dimensions that are not a multiple of 16, and 8
bits, are coded that way.

When the vectors trained on are unit length (every encoder colcade ships normalizes its tokens),
the codec is ``unit``: a decoded vector is put back on the unit sphere. Its length error is pure
noise, and removing it cut the nDCG@10 lost to compression from 0.0044 to 0.0011 on SciFact's
train queries (the split used to choose it; benchmarks/compression.py reports every collection).

Scores need no decoding pass of their own: the kernels (``kernels.maxsim_codes`` and
``kernels.maxsim_residual``) read the codes directly, the residual through ``table`` (bucket b's
value of every dimension), or for the unrotated coding through ``lut()``, the reconstructed
residual values of every byte value at every byte position.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import numbers
import os
from pathlib import Path

import faiss
import numpy as np

from colcade.errors import CorruptIndexError, InvalidInputError

# Up to FLAT_CENTROIDS, a token's centroid is the best of all of them (one matrix product), as
# PLAID's rule asks up to 65k tokens; fitting them takes ~15 s on 2 cores. Past that, centroids are
# a two-level codebook (``TREE_CENTROIDS`` at most: codes are uint16): ``g`` coarse centroids, each
# with ``k / g`` leaves fitted to its own tokens, and a token takes the best leaf of its best coarse
# centroid, ~2 sqrt(k) products where a flat search takes k. Set by build time, not by any scores.
FLAT_CENTROIDS = 4096
TREE_CENTROIDS = 1 << 16
# Tokens a centroid stands for at least, past FLAT_CENTROIDS: a leaf of a small index would cost
# more bytes than it saves (65,536 int8 leaves are 8 MB at d=128: 0.5 B/token at 16 M tokens).
TOKENS_A_LEAF = 256
_BLOCK = 1 << 14  # tokens encoded at a time (memory stays bounded on any write: ~25 MB at d=384)
# Residual bits a dimension on average by default, rotated (see ``train``): the fewest of 1.5,
# 1.75 and 2 whose fidelity@10 on SciFact's train queries is no lower than 2 bits in every
# dimension gave (benchmarks/rotation.py: 0.911, 0.924, 0.934 against 0.912).
DEFAULT_NBITS = 1.75
ROTATED_BLOCK = 16  # dimensions sharing a width: whole bytes at every width, one AVX-512 register
ROTATED_WIDTHS = (0, 1, 2, 4)
_DISTORTION = {0: 1.0, 1: 0.3634, 2: 0.1175, 4: 0.0095}  # Lloyd-Max, unit Gaussian (Max 1960)


def centroid_count(n_tokens: int) -> int:
    """PLAID's rule, 2^floor(log2(16 sqrt(T))), capped at the tokens there are and at
    ``FLAT_CENTROIDS``; past it, at ``TREE_CENTROIDS`` and one centroid for ``TOKENS_A_LEAF`` tokens.

    >>> centroid_count(100), centroid_count(10_000), centroid_count(1_000_000)
    (64, 1024, 4096)
    >>> centroid_count(6_000_000), centroid_count(120_000_000)
    (16384, 65536)
    """
    t = max(1, n_tokens)
    k = min(2 ** int(math.log2(16 * math.sqrt(t))), 2 ** int(math.log2(t)))
    return int(max(1, min(k, max(FLAT_CENTROIDS, min(TREE_CENTROIDS, 2 ** int(math.log2(t / TOKENS_A_LEAF)))))))


def coarse_count(k: int) -> int:
    """Coarse centroids of a two-level codebook of ``k`` (0: flat): ~sqrt(k), so both levels cost alike.

    >>> coarse_count(4096), coarse_count(16384), coarse_count(65536)
    (0, 128, 256)
    """
    return 0 if k <= FLAT_CENTROIDS else 2 ** math.ceil(math.log2(k) / 2)


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


def tree_kmeans(sample: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A two-level codebook: (coarse ``[g, d]``, leaves ``[k, d]``, group ``i``'s in rows
    ``i * k/g`` on). Each coarse centroid's leaves are fitted to the sample's tokens whose best
    coarse centroid it is, so a token is coded the way the leaves were fitted. A group with fewer
    tokens than leaves repeats its coarse centroid for the rest (a tie goes to the first)."""
    g = coarse_count(k)
    m = k // g
    coarse = spherical_kmeans(sample, g, per_centroid=256, seed=seed).astype(np.float16).astype(np.float32)
    group = _best(sample, coarse)
    leaves = np.repeat(coarse, m, axis=0)
    for i in range(g):
        mine = sample[group == i]
        if len(mine):
            fitted = spherical_kmeans(mine, min(m, len(mine)), per_centroid=256, seed=seed + i)
            leaves[i * m : i * m + len(fitted)] = fitted
    return coarse, leaves


def _best(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The highest-scoring row of ``centroids`` for each vector, int64, a block at a time."""
    out = np.empty(len(vectors), np.int64)
    for start in range(0, len(vectors), _BLOCK):
        block = np.asarray(vectors[start : start + _BLOCK], np.float32)
        out[start : start + len(block)] = np.argmax(block @ centroids.T, axis=1)
    return out


class ResidualCodec:
    """Centroids, residual bucket cutoffs and bucket weights (and, for a rotated codec, the
    rotation and each dimension's width); immutable once trained."""

    def __init__(
        self,
        centroids: np.ndarray,
        cutoffs: np.ndarray,
        weights: np.ndarray,
        nbits: float,
        trained_on: int,
        unit: bool = False,
        widths: np.ndarray | None = None,
        rotation: np.ndarray | None = None,
        steps: np.ndarray | None = None,
        coarse: np.ndarray | None = None,
    ) -> None:
        self.centroids = np.ascontiguousarray(centroids, np.float32)
        # A two-level codebook's coarse centroids; centroid c's group is c // (k / len(coarse)).
        self.coarse = None if coarse is None else np.ascontiguousarray(coarse, np.float32)
        # Stored as int8 multiples of a step a dimension (rotated codecs), else as float16 values.
        self.steps = None if steps is None else np.ascontiguousarray(steps, np.float32)
        self.cutoffs = np.ascontiguousarray(cutoffs, np.float32)  # [d, buckets - 1], ascending per row
        self.weights = np.ascontiguousarray(weights, np.float32)  # [d, buckets]
        self.trained_on, self.unit = int(trained_on), bool(unit)
        self.k, self.dim = self.centroids.shape
        if rotation is None:
            if nbits not in (1, 2, 4, 8):
                raise InvalidInputError(f"nbits must be 1, 2, 4 or 8, but got {nbits}")
            self.rotation: np.ndarray | None = None
            self.widths = np.full(self.dim, int(nbits), np.uint8)
            self.nbits: float = int(nbits)
        else:
            self.rotation = np.ascontiguousarray(rotation, np.float32)  # [d, d]: rotated = vectors @ rotation
            self.widths = np.ascontiguousarray(widths if widths is not None else [], np.uint8)
            if self.rotation.shape != (self.dim, self.dim) or self.widths.shape != (self.dim,):
                d = self.dim
                raise InvalidInputError(f"a rotated codec needs a [{d}, {d}] rotation and {d} widths")
            if not np.isin(self.widths, ROTATED_WIDTHS).all() or self.weights.shape[1] != 16:
                raise InvalidInputError("a rotated codec's widths must be 0, 1, 2 or 4 bits, its table 16 buckets")
            self.nbits = float(self.widths.mean())
        if self.coarse is not None and (
            self.coarse.ndim != 2
            or self.coarse.shape[1] != self.dim
            or not len(self.coarse)
            or self.k % len(self.coarse)
        ):
            raise InvalidInputError(f"a codec's {self.k} centroids must split evenly among its coarse centroids")
        self._runs = _runs(self.widths)
        self.nbytes = int(self.widths.sum()) // 8  # residual bytes a token
        self._index: faiss.Index | None = None
        self._lut: np.ndarray | None = None

    @functools.cached_property
    def name(self) -> str:
        """A content hash: segments name the codec they were written with."""
        h = hashlib.sha256()
        for a in (self.centroids, self.cutoffs, self.weights):
            h.update(a.tobytes())
        if self.rotation is None:
            h.update(bytes([int(self.nbits)]))
        else:
            h.update(b"rotated" + self.widths.tobytes() + self.rotation.tobytes())
        if self.unit:  # codecs saved before the flag existed keep their names
            h.update(b"unit")
        if self.coarse is not None:
            h.update(b"coarse" + self.coarse.tobytes())
        return "codec-" + h.hexdigest()[:16]

    @functools.cached_property
    def kernel_centroids(self) -> np.ndarray:
        """The centroids in the axes the residuals are coded in (rotated, for a rotated codec)."""
        if self.rotation is None:
            return self.centroids
        return np.ascontiguousarray(self.centroids @ self.rotation)

    @functools.cached_property
    def table(self) -> np.ndarray:
        """float32 ``[buckets, d]``: bucket b's value of each dimension (the kernels' layout)."""
        return np.ascontiguousarray(self.weights.T)

    @classmethod
    def train(
        cls,
        tokens: np.ndarray,
        n_tokens: int | None = None,
        nbits: float | None = None,
        seed: int = 0,
        rotate: bool | None = None,
    ) -> ResidualCodec:
        """Fit a codec to a sample of token vectors (``n_tokens``: how many the sample stands for).

        ``nbits``: residual bits a dimension on average (``default_nbits(d)`` when None). Where
        ``rotates(nbits, d)`` (and unless ``rotate`` is False: the coding before rotation, for
        comparisons), residuals are rotated to their principal axes and each block of 16 axes
        gets 0, 1, 2 or 4 bits by its variance; otherwise every dimension gets ``nbits`` (1, 2, 4
        or 8).
        """
        sample = np.ascontiguousarray(tokens, np.float32)
        if sample.ndim != 2 or not len(sample):
            raise InvalidInputError("a codec needs at least one token vector to train on")
        d = sample.shape[1]
        nbits = default_nbits(d) if nbits is None else nbits
        check_nbits(nbits, d)
        rotate = rotates(nbits, d) if rotate is None else rotate
        if rotate != rotates(nbits, d) and (rotate or nbits not in (1, 2, 4, 8)):
            raise InvalidInputError(
                f"a codec of {nbits} bits a dimension at d={d} cannot be {'un' * (not rotate)}rotated"
            )
        n = len(sample) if n_tokens is None else n_tokens
        unit = _unit_length(sample)
        # As many as the tokens stood for ask, as far as the sample holds 16 a centroid.
        k = min(centroid_count(n), max(centroid_count(len(sample)), 2 ** int(math.log2(max(1, len(sample) // 16)))))
        # Rounded as stored first, so residuals are measured from the centroids as read back:
        # int8 for a rotated codec (a quarter of float32; the rounding adds ~0.2% to the residual's
        # variance, and 4,096 centroids are most of the codec on a small index), else float16.
        coarse = None
        if coarse_count(k):
            coarse, centroids = tree_kmeans(sample, k, seed=seed)
        else:
            centroids = spherical_kmeans(sample, k, per_centroid=16, seed=seed)
        steps = None
        if rotate:
            steps = np.abs(centroids).max(axis=0) / np.float32(127)
            steps = np.where(steps > 0, steps, np.float32(1)).astype(np.float32)
            centroids = np.round(centroids / steps).astype(np.int8).astype(np.float32) * steps
        else:
            centroids = centroids.astype(np.float16).astype(np.float32)
        assign = cls(centroids, np.zeros((d, 255)), np.zeros((d, 256)), 8, n, coarse=coarse).assign  # centroids alone
        # Residual statistics from at most 16k tokens: quantiles need no more, and memory stays small.
        if len(sample) > 1 << 14:
            sample = sample[np.random.default_rng(seed).choice(len(sample), 1 << 14, replace=False)]
        residual = sample - centroids[assign(sample)]
        rotation = None
        widths = np.full(d, int(nbits), np.uint8)
        if rotate:
            # Principal axes, rounded to float16 as stored; dot products need no orthogonality
            # (a query is rotated by the same matrix), and rounding moves a vector by ~1e-5.
            _, axes = np.linalg.eigh(np.cov(residual.T.astype(np.float64)))  # ascending eigenvalues
            rotation = np.ascontiguousarray(axes[:, ::-1]).astype(np.float16).astype(np.float32)
            residual = residual @ rotation
            widths = allocate_widths(residual.var(axis=0), nbits)
        buckets = 16 if rotation is not None else 2 ** int(nbits)
        cutoffs = np.full((d, buckets - 1), np.inf, np.float32)  # unused cutoffs: +inf, never exceeded
        weights = np.zeros((d, buckets), np.float32)
        for w in map(int, np.unique(widths)):  # a Python int: 2 ** np.uint8(8) overflows to 0
            dims = np.flatnonzero(widths == w)
            cutoffs[dims, : 2**w - 1], weights[dims, : 2**w] = _quantize(residual[:, dims], w)
        if rotation is None:
            return cls(centroids, cutoffs, weights, nbits, n, unit, coarse=coarse)
        return cls(centroids, cutoffs, weights, nbits, n, unit, widths, rotation, steps, coarse)

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """The nearest centroid (highest inner product) of each vector: uint16 ``[T]``; with a
        two-level codebook, the nearest leaf of the nearest coarse centroid."""
        if self.coarse is not None:
            return self._descend(vectors)
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

    def _descend(self, vectors: np.ndarray) -> np.ndarray:
        assert self.coarse is not None
        m = self.k // len(self.coarse)
        out = np.empty(len(vectors), np.uint16)
        step = _BLOCK * 4  # groups of ~m tokens a block keep the leaves' products matrix-sized
        for start in range(0, len(vectors), step):
            block = np.ascontiguousarray(vectors[start : start + step], np.float32)
            group = np.argmax(block @ self.coarse.T, axis=1)
            order = np.argsort(group, kind="stable")
            bounds = np.searchsorted(group[order], np.arange(len(self.coarse) + 1))
            codes = np.empty(len(block), np.int64)
            for i in np.flatnonzero(np.diff(bounds)):
                rows = order[bounds[i] : bounds[i + 1]]
                leaves = self.centroids[i * m : (i + 1) * m]
                codes[rows] = i * m + np.argmax(block[rows] @ leaves.T, axis=1)
            out[start : start + len(block)] = codes
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
            if self.rotation is not None:
                residual = residual @ self.rotation
            packed[start : start + len(block)] = self._pack(self._buckets(residual))
        return codes, packed

    def _buckets(self, residual: np.ndarray) -> np.ndarray:
        """Each dimension's bucket, against its own width's cutoffs only (a rotated codec's table
        pads every dimension to 15: comparing against all of them took 1.6-2x as long)."""
        out = np.zeros(residual.shape, np.uint8)  # 0-bit dimensions: bucket 0
        for w, lo, hi, _ in self._runs:
            out[:, lo:hi] = _buckets(residual[:, lo:hi], self.cutoffs[lo:hi, : 2**w - 1])
        return out

    def _pack(self, buckets: np.ndarray) -> np.ndarray:
        out = np.zeros((len(buckets), self.nbytes), np.uint8)
        for w, lo, hi, at in self._runs:
            per_byte = 8 // w
            grouped = buckets[:, lo:hi].reshape(len(buckets), -1, per_byte).astype(np.uint8)
            part = out[:, at : at + grouped.shape[1]]
            for j in range(per_byte):  # dimension j of a byte sits in its j-th highest bit group
                part |= grouped[:, :, j] << np.uint8(w * (per_byte - 1 - j))
        return out

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """Residual buckets uint8 ``[T, d]`` from packed bytes (0 where a dimension has no bits)."""
        packed = np.asarray(packed)
        out = np.zeros((len(packed), self.dim), np.uint8)
        for w, lo, hi, at in self._runs:
            per_byte, mask = 8 // w, np.uint8(2**w - 1)
            part = packed[:, at : at + (hi - lo) // per_byte]
            bits = [(part >> np.uint8(w * (per_byte - 1 - j))) & mask for j in range(per_byte)]
            out[:, lo:hi] = np.stack(bits, axis=-1).reshape(len(packed), hi - lo)
        return out

    def decode(self, codes: np.ndarray, packed: np.ndarray) -> np.ndarray:
        """The stored vectors, float32 ``[T, d]`` (the reference the kernels are held to)."""
        buckets = self.unpack(packed)
        base = self.kernel_centroids[np.asarray(codes, np.int64)]
        out: np.ndarray = base + self.weights[np.arange(self.dim), buckets]
        if self.unit:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-12))
        if self.rotation is not None:  # back to the original axes: scores are q @ rotation against out
            out = out @ self.rotation.T
        return out

    def lut(self) -> np.ndarray:
        """float32 ``[nbytes, 256, 8 / nbits]``: the residual values a byte holds, by byte position
        (a codec with one width for every dimension; a rotated one is read through ``table``)."""
        if self.rotation is not None:
            raise InvalidInputError("a rotated codec has no byte table: its kernel reads `table`")
        if self._lut is None:
            nbits = int(self.nbits)
            per_byte = 8 // nbits
            buckets = self.unpack(np.arange(256, dtype=np.uint8)[:, None].repeat(self.nbytes, 1))[:, :per_byte]
            dims = np.arange(self.nbytes)[:, None] * per_byte + np.arange(per_byte)  # [nbytes, per_byte]
            self._lut = np.ascontiguousarray(self.weights[dims[:, None, :], buckets[None, :, :]], np.float32)
        return self._lut

    def save(self, folder: Path) -> None:
        """Write to ``folder`` (a new folder, made whole before it appears: temp name, then rename)."""
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        if self.steps is None:
            np.save(tmp / "centroids.npy", self.centroids.astype(np.float16))  # exact: trained as float16 values
        else:  # exact: trained as int8 multiples of the steps
            np.save(tmp / "centroids.npy", np.round(self.centroids / self.steps).astype(np.int8))
            np.save(tmp / "steps.npy", self.steps)
        np.save(tmp / "cutoffs.npy", self.cutoffs)
        np.save(tmp / "weights.npy", self.weights)
        info: dict[str, object] = {"nbits": self.nbits, "trained_on": self.trained_on, "unit": self.unit}
        if self.rotation is not None:
            np.save(tmp / "rotation.npy", self.rotation.astype(np.float16))  # exact: float16 values
            np.save(tmp / "widths.npy", self.widths)
            info["coding"] = "rotated"
        if self.coarse is not None:
            np.save(tmp / "coarse.npy", self.coarse.astype(np.float16))  # exact: trained as float16 values
            info["coarse"] = len(self.coarse)
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
            rotated = info.get("coding") == "rotated"
            steps = np.load(folder / "steps.npy", allow_pickle=False) if rotated else None
            if steps is not None:
                centroids = centroids.astype(np.float32) * steps
            codec = cls(
                centroids,
                cutoffs,
                weights,
                nbits=float(info["nbits"]) if rotated else int(info["nbits"]),
                trained_on=int(info["trained_on"]),
                unit=bool(info.get("unit", False)),
                widths=np.load(folder / "widths.npy", allow_pickle=False) if rotated else None,
                rotation=np.load(folder / "rotation.npy", allow_pickle=False) if rotated else None,
                steps=steps,
                coarse=np.load(folder / "coarse.npy", allow_pickle=False) if "coarse" in info else None,
            )
        except FileNotFoundError:
            if not (folder / "codec.json").exists():  # no codec here: the store says what to do
                raise
            raise CorruptIndexError(f"the codec in {folder} lacks a file: rebuild the index") from None
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


def rotates(nbits: float, dim: int) -> bool:
    """Whether a codec of ``nbits`` a dimension at ``dim`` is rotated (blocks of 16 whole
    dimensions, at most 4 bits each); 8 bits, dimensions not a multiple of 16, and fewer than 64
    (too few blocks to share the bits: 1.75 would round down to 1 bit at d=16) are not."""
    return dim >= 4 * ROTATED_BLOCK and dim % ROTATED_BLOCK == 0 and nbits <= 4


def default_nbits(dim: int | None) -> float:
    """``DEFAULT_NBITS`` where ``dim`` can be rotated; else 2 bits in every dimension (PLAID's).

    >>> default_nbits(384), default_nbits(100), default_nbits(32)
    (1.75, 2, 2)
    """
    return DEFAULT_NBITS if dim is None or rotates(DEFAULT_NBITS, dim) else 2


def check_nbits(nbits: float, dim: int | None = None) -> None:
    """Refuse a bit budget no codec can meet (``dim``: the token vectors', where known)."""
    if isinstance(nbits, bool) or not isinstance(nbits, numbers.Real) or not (0.25 <= nbits <= 4 or nbits == 8):
        raise InvalidInputError(f"nbits must be a number in [0.25, 4] or 8, but got {nbits!r}")
    if dim is not None and not rotates(nbits, dim) and nbits not in (1, 2, 4, 8):
        raise InvalidInputError(
            f"{dim}-dim token vectors cannot be rotated (blocks of {ROTATED_BLOCK} dimensions), so every dimension "
            f"gets the same bits: nbits must be 1, 2, 4 or 8 for them, but got {nbits!r}"
        )


def allocate_widths(variance: np.ndarray, nbits: float) -> np.ndarray:
    """A width of 0, 1, 2 or 4 bits for each dimension, constant over each block of 16, within
    ``nbits`` a dimension on average: greedily, the step that removes the most expected squared
    error a bit (Lloyd-Max distortions of a Gaussian; reverse water-filling in whole blocks)."""
    blocks = np.asarray(variance, np.float64).reshape(-1, ROTATED_BLOCK).sum(1)
    width = np.zeros(len(blocks), int)
    budget = int(round(nbits * len(variance)))
    while True:
        best, pick, step = 0.0, -1, 0
        for b, w in enumerate(width):
            up = next((x for x in ROTATED_WIDTHS if x > w), None)
            if up is None or (up - w) * ROTATED_BLOCK > budget:
                continue
            gain = blocks[b] * (_DISTORTION[w] - _DISTORTION[up]) / (up - w)
            if gain > best:
                best, pick, step = gain, b, up
        if pick < 0:
            return np.repeat(width, ROTATED_BLOCK).astype(np.uint8)
        budget -= (step - width[pick]) * ROTATED_BLOCK
        width[pick] = step


def _quantize(residual: np.ndarray, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per dimension: cutoffs at the residual's quantiles, and each bucket read back as its mean."""
    n = 2**nbits
    cutoffs = np.quantile(residual, np.arange(1, n) / n, axis=0).T.astype(np.float32)  # [d, n - 1]
    buckets = _buckets(residual, cutoffs)
    weights = np.empty((residual.shape[1], n), np.float32)
    for b in range(n):
        inside = buckets == b
        counts = inside.sum(axis=0)
        sums = np.where(inside, residual, 0).sum(axis=0)
        # An empty bucket (few distinct values) reads back as its cutoff's neighbourhood.
        edge = cutoffs[:, min(b, n - 2)] if n > 1 else np.zeros(residual.shape[1], np.float32)
        weights[:, b] = np.where(counts > 0, sums / np.maximum(counts, 1), edge)
    return cutoffs, weights


def _runs(widths: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Runs of dimensions of one width > 0: (width, first dim, end dim, first byte); each run
    must fill whole bytes, so no dimension's bits straddle two."""
    runs, at, lo = [], 0, 0
    for hi in range(1, len(widths) + 1):
        if hi == len(widths) or widths[hi] != widths[lo]:
            w = int(widths[lo])
            if (hi - lo) * w % 8:
                raise InvalidInputError(f"dimensions {lo}..{hi - 1} at {w} bits do not fill whole bytes")
            if w:
                runs.append((w, lo, hi, at))
                at += (hi - lo) * w // 8
            lo = hi
    return runs
