"""The encoder contract: any model that emits one vector per token.

``encode_documents(texts) -> Encoded`` and ``encode_query(text) -> EncodedQuery``; ``name``,
``dim`` (token vectors), ``dense_dim`` (the one-vector-per-passage shortlist vector) and
``fingerprint`` identify the model, and are stored in an index's manifest so an index is
never queried with another model.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from colcade.errors import InvalidInputError


@dataclass(frozen=True)
class Encoded:
    """Vectors of ``n`` passages: ``dense`` float32 ``[n, dense_dim]``, ``tokens`` n arrays float32 ``[t_i, dim]``."""

    dense: np.ndarray
    tokens: list[np.ndarray]


@dataclass(frozen=True)
class EncodedQuery:
    """Vectors of one query: ``dense`` float32 ``[dense_dim]``, ``tokens`` float32 ``[q, dim]``."""

    dense: np.ndarray
    tokens: np.ndarray


@runtime_checkable
class Encoder(Protocol):
    """What an index needs of a model. See ``colcade.encoders.PrecomputedEncoder`` for a small one."""

    name: str
    dim: int
    dense_dim: int

    @property
    def fingerprint(self) -> str: ...

    def encode_documents(self, texts: Sequence[str]) -> Encoded: ...

    def encode_query(self, text: str) -> EncodedQuery: ...


def sha256_file(path: Any) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (weights files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_of(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (model name, dims, weights checksum...)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def describe(encoder: Encoder) -> dict[str, Any]:
    """The encoder's identity as stored in an index manifest.

    ``config`` (an encoder's ``config`` attribute, JSON-able constructor arguments) lets
    ``LateIndex.open`` rebuild the encoder of a kind colcade knows without being told;
    ``runtime``, where an encoder states one, says what runs it (``"onnxruntime (cpu)"``,
    ``"torch (cuda)"``): informative, since the same model gives the same vectors on either.
    """
    info = {
        "name": encoder.name,
        "dim": int(encoder.dim),
        "dense_dim": int(encoder.dense_dim),
        "fingerprint": encoder.fingerprint,
        "kind": getattr(encoder, "kind", type(encoder).__name__),
        "config": dict(getattr(encoder, "config", {}) or {}),
    }
    if getattr(encoder, "runtime", None):
        info["runtime"] = encoder.runtime  # type: ignore[attr-defined]
    return info


def check_texts(texts: Sequence[str]) -> None:
    """Every text a non-empty string, or an InvalidInputError naming the first that is not."""
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"text {i} is empty or not a string; every text needs content")


def warn_truncated(truncated: int, total: int, limit: str) -> None:
    """One warning for the texts an encoder cut at its token limit (``limit``: e.g. "256")."""
    if truncated:
        warnings.warn(
            f"{truncated} of {total} texts were longer than {limit} tokens and were truncated; "
            "split long documents into passages (the `colcade index` command does this)",
            stacklevel=3,
        )


def normalize(vectors: Any) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), float32.

    >>> normalize(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    x = np.asarray(vectors, np.float32)
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12), np.float32)


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int = 2048) -> list[list[int]]:
    """Indices grouped into batches by length, each of at most ``batch_size`` texts and at most
    ``max_tokens`` padded tokens: attention memory grows with batch x length^2, so long
    passages go 8 at a time and queries many more.

    >>> length_batches([3, 300, 5, 260], batch_size=32, max_tokens=512)
    [[0, 2], [3], [1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and (len(batches[-1]) + 1) * lengths[i] <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token id rows as an int64 ``[n, longest]`` matrix and its attention mask."""
    ids = np.full((len(rows), max(len(r) for r in rows)), pad_id, np.int64)
    mask = np.zeros_like(ids)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = r
        mask[j, : len(r)] = 1
    return ids, mask


def pool(tokens: np.ndarray) -> np.ndarray:
    """The L2-normalized mean of token vectors: the dense vector when a model has none."""
    mean = np.asarray(tokens, dtype=np.float32).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return np.asarray(mean / norm if 0 < norm < np.inf else mean)  # bad values are reported by check_*


def check_tokens(tokens: Any, dim: int, what: str) -> np.ndarray:
    """``tokens`` as float32 ``[t, dim]``, or an InvalidInputError that says what is wrong."""
    array = np.asarray(tokens, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != dim:
        raise InvalidInputError(f"{what} must be a [tokens, {dim}] matrix, but got shape {array.shape}")
    if array.shape[0] == 0:
        raise InvalidInputError(f"{what} has no token vectors; every passage and query needs at least one")
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{what} contains NaN or infinite values")
    return array


def check_dense(dense: Any, n: int, dense_dim: int, what: str) -> np.ndarray:
    """``dense`` as float32 ``[n, dense_dim]``, or an InvalidInputError."""
    array = np.asarray(dense, dtype=np.float32)
    if array.ndim == 1 and n == 1:
        array = array[None, :]
    if array.shape != (n, dense_dim):
        raise InvalidInputError(f"{what} must have shape ({n}, {dense_dim}), but got {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{what} contains NaN or infinite values")
    return array
