"""Token vectors that look like real ones, at any scale (the million-passage benchmark's data).

Fitted once (and cached) to the default encoder's real token vectors of the shared collections:
- a PCA to ``dim`` dimensions (ColBERT-sized models are 128-dimensional), tokens back on the sphere;
- ``K`` spherical k-means centroids of the projected tokens;
- for each centroid, a pool of its real tokens' residuals (how far and which way they spread);
- each real passage's sequence of centroids (which tokens occur together).

Two kinds of passage, as issue 16 asks:
- ``text``: a window of a real passage's centroid sequence, a quarter of it swapped for another
  passage's (so no two synthetic passages are copies), each token drawn around its centroid with
  one of that centroid's real residuals plus a little noise;
- ``patches`` (ColPali-like pages): every token's centroid drawn on its own, by frequency: a bag
  of unrelated patches, where a pooled vector says little.
Queries are the collections' real queries, projected the same way (~14 tokens, the default
encoder's shape).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embeddings import CACHE, COLLECTIONS, cache_key, load  # noqa: E402

from colcade.encoders.default import MiniLMEncoder  # noqa: E402
from colcade.engine.codec import spherical_kmeans  # noqa: E402

POOL = 64  # residuals kept a centroid


@dataclass
class Fitted:
    mean: np.ndarray  # [384]
    components: np.ndarray  # [384, dim]
    centroids: np.ndarray  # [K, dim] unit
    residuals: np.ndarray  # [K, POOL, dim] float16
    frequency: np.ndarray  # [K] share of real tokens
    sequences: np.ndarray  # centroid ids of the real passages, concatenated
    offsets: np.ndarray  # [passages + 1]
    queries: list[np.ndarray]  # real queries, projected, unit rows

    def project(self, x: np.ndarray) -> np.ndarray:
        y = (np.asarray(x, np.float32) - self.mean) @ self.components
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)


def fit(dim: int = 128, k: int = 4096, collections: list[str] | None = None, seed: int = 0) -> Fitted:
    """Fit (or load from benchmarks/.cache) the model of real tokens described above."""
    encoder = MiniLMEncoder(precision="float32")  # the tokens every scale figure was made from
    names = collections or COLLECTIONS
    path = CACHE / f"realistic.{'-'.join(names)}.{dim}.{k}.{cache_key(encoder)}.npz"
    if path.exists():
        z = np.load(path)
        qo = z["query_offsets"]
        queries = [z["query_tokens"][qo[i] : qo[i + 1]].astype(np.float32) for i in range(len(qo) - 1)]
        return Fitted(
            z["mean"], z["components"], z["centroids"], z["residuals"], z["frequency"], z["sequences"],
            z["offsets"], queries,
        )  # fmt: skip
    rng = np.random.default_rng(seed)
    flats, lengths, real_queries = [], [], []
    for name in names:
        _, corpus, qs = load(name, encoder)
        kept = encoder._keep[corpus.token_ids]  # every token, as the default encoder keeps
        flats.append(corpus.vectors[kept])
        lengths += [int(kept[a:b].sum()) for a, b in zip(corpus.offsets[:-1], corpus.offsets[1:])]
        real_queries += qs.tokens(encoder._keep)
    flat = np.concatenate(flats)  # float16 [T, 384]
    del flats
    sample = flat[np.sort(rng.choice(len(flat), size=min(len(flat), 400_000), replace=False))].astype(np.float32)
    mean = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    fitted = Fitted(mean, vt[:dim].T.astype(np.float32), None, None, None, None, None, [])  # type: ignore[arg-type]
    projected = np.concatenate([fitted.project(flat[i : i + (1 << 18)]) for i in range(0, len(flat), 1 << 18)])
    del flat
    picked = rng.choice(len(projected), size=min(len(projected), 256 * k), replace=False)
    centroids = spherical_kmeans(projected[picked], k, 256)
    search = faiss.IndexFlatIP(dim)
    search.add(centroids)
    ids = search.search(projected, 1)[1][:, 0].astype(np.int64)
    residuals = np.zeros((k, POOL, dim), np.float16)
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(k + 1))
    for c in range(k):
        members = order[bounds[c] : bounds[c + 1]]
        if len(members):
            chosen = rng.choice(members, size=POOL, replace=len(members) < POOL)
            residuals[c] = projected[chosen] - centroids[c]
    lengths = np.array(lengths)
    queries = real_queries
    fitted.centroids, fitted.residuals = centroids, residuals
    fitted.frequency = np.bincount(ids, minlength=k) / len(ids)
    fitted.sequences, fitted.offsets = ids.astype(np.int32), np.concatenate([[0], np.cumsum(lengths)])
    fitted.queries = [fitted.project(q) for q in queries]
    qo = np.concatenate([[0], np.cumsum([len(q) for q in fitted.queries])])
    np.savez(
        path, mean=fitted.mean, components=fitted.components, centroids=centroids, residuals=residuals,
        frequency=fitted.frequency, sequences=fitted.sequences, offsets=fitted.offsets,
        query_tokens=np.concatenate(fitted.queries).astype(np.float16), query_offsets=qo,
    )  # fmt: skip
    return fitted


def passages(fitted: Fitted, n: int, kind: str = "text", tokens: int = 120, seed: int = 1, batch: int = 10_000):
    """``n`` synthetic passages in batches: lists of float16 ``[t, dim]`` unit rows, t around ``tokens``.

    Made 5,000 passages at a time, so memory holds one batch of float16 and one small float32 chunk."""
    rng = np.random.default_rng(seed)
    real = np.flatnonzero(np.diff(fitted.offsets) > 0)  # passages with tokens
    out: list[np.ndarray] = []
    for start in range(0, n, 5_000):
        size = min(5_000, n - start)
        lengths = rng.integers(tokens * 3 // 4, tokens * 5 // 4 + 1, size=size)
        if kind == "patches":
            ids = rng.choice(len(fitted.centroids), size=int(lengths.sum()), p=fitted.frequency)
        else:
            ids = np.concatenate([_window(fitted, rng, int(length), real) for length in lengths])
        v = fitted.residuals[ids, rng.integers(POOL, size=len(ids))].astype(np.float32)
        v += fitted.centroids[ids]
        v += rng.standard_normal(v.shape, dtype=np.float32) * np.float32(0.01)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out += np.split(v.astype(np.float16), np.cumsum(lengths)[:-1])
        del v
        while len(out) >= batch:
            yield out[:batch]
            out = out[batch:]
    if out:
        yield out


def _window(fitted: Fitted, rng: np.random.Generator, length: int, real: np.ndarray) -> np.ndarray:
    """``length`` centroid ids: a window of one real passage, a quarter swapped for another's."""

    def sequence() -> np.ndarray:
        p = int(real[rng.integers(len(real))])
        return fitted.sequences[fitted.offsets[p] : fitted.offsets[p + 1]]

    out, have = [], 0
    while have < length:
        seq = sequence()
        lo = int(rng.integers(0, max(1, len(seq) - length + 1)))
        out.append(seq[lo : lo + length - have])
        have += len(out[-1])
    ids = np.concatenate(out)
    other = sequence()
    swap = rng.random(length) < 0.25
    ids[swap] = other[rng.integers(len(other), size=int(swap.sum()))]
    return ids
