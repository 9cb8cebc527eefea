"""Residual coding with fewer bits: rotate residuals to their principal axes, give bits by variance.

    python benchmarks/rotation.py

Not what colcade does yet: a measurement of the next step for the size target (<= 100 bytes a
token at d=384, where 2 bits a dimension are 96 bytes before the centroid id). Today's codec
gives every dimension 2 bits. Residuals of real tokens are far from isotropic (their covariance's
eigenvalues span ~100x), so rotating them onto their principal axes and giving each block of 16
axes 0, 1, 2 or 4 bits by its variance (greedy reverse water-filling, Gaussian quantizer
distortions) should lose less at the same bits, or keep as much at fewer. Both are coded the
way the codec codes (quantile buckets read back as their means, each vector back on the unit
sphere), from the codec colcade fits (same centroids); dot products are unchanged by the
rotation, so a query would be rotated once. Per collection: residual bytes a token, fidelity@10
to exhaustive float MaxSim and nDCG@10, exhaustively over every passage. SciFact's train queries
are where a default would be chosen; the rest are reported. At most 200 queries a collection.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embeddings import COLLECTIONS, load  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402

from colcade.app.eval import fidelity, ndcg  # noqa: E402
from colcade.encoders.default import MiniLMEncoder  # noqa: E402
from colcade.engine.codec import MAX_CENTROIDS, ResidualCodec  # noqa: E402

MAX_QUERIES = 200
BLOCK = 16  # dimensions sharing a width: whole bytes at every width, and one AVX-512 register
WIDTHS = (0, 1, 2, 4)
DISTORTION = {0: 1.0, 1: 0.3634, 2: 0.1175, 4: 0.0095}  # Lloyd-Max, unit Gaussian (Max 1960)
VARIANTS = [
    ("today: 2 bits every dimension", None),  # label, bits a dimension on average (None: today's codec)
    ("rotated, 2.0 bits", 2.0),
    ("rotated, 1.75", 1.75),
    ("rotated, 1.5", 1.5),
]


def widths_for(variance: np.ndarray, bits_per_dim: float) -> np.ndarray:
    """A width per dimension (blocks of ``BLOCK`` descending-variance axes), greedily by the
    distortion a bit removes, within ``bits_per_dim`` on average."""
    blocks = variance.reshape(-1, BLOCK).sum(1)
    width = np.zeros(len(blocks), int)
    budget = int(bits_per_dim * len(variance))
    while True:
        best, pick = 0.0, -1
        for b, w in enumerate(width):
            nxt = next((x for x in WIDTHS if x > w), None)
            if nxt is None or (nxt - w) * BLOCK > budget:
                continue
            gain = blocks[b] * (DISTORTION[w] - DISTORTION[nxt]) / (nxt - w)
            if gain > best:
                best, pick = gain, b
        if pick < 0:
            return np.repeat(width, BLOCK)
        nxt = next(x for x in WIDTHS if x > width[pick])
        budget -= (nxt - width[pick]) * BLOCK
        width[pick] = nxt


def quantizer(sample: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per dimension: cutoffs at its quantiles (padded with +inf) and each bucket's mean, as the codec."""
    d = sample.shape[1]
    cutoffs = np.full((d, 15), np.inf, np.float32)
    means = np.zeros((d, 16), np.float32)
    for i in range(d):
        n = 2 ** int(width[i])
        cut = np.quantile(sample[:, i], np.arange(1, n) / n)
        bucket = np.searchsorted(cut, sample[:, i])
        cutoffs[i, : n - 1] = cut
        means[i, :n] = [sample[bucket == b, i].mean() if (bucket == b).any() else 0.0 for b in range(n)]
    return cutoffs, means


def coded(
    vectors: np.ndarray, codec: ResidualCodec, codes: np.ndarray, rotation: np.ndarray | None, width: np.ndarray
) -> np.ndarray:
    """The vectors as stored by that coding, back on the unit sphere (in the original axes)."""
    rng = np.random.default_rng(0)
    rows = rng.choice(len(vectors), min(len(vectors), 1 << 16), replace=False)
    sample = vectors[rows] - codec.centroids[codes[rows]]
    cutoffs, means = quantizer(sample @ rotation if rotation is not None else sample, width)
    out = np.empty_like(vectors)
    dims = np.arange(vectors.shape[1])
    for start in range(0, len(vectors), 1 << 15):
        c = codec.centroids[codes[start : start + (1 << 15)]]
        r = vectors[start : start + len(c)] - c
        if rotation is not None:
            r = r @ rotation
        bucket = np.zeros(r.shape, np.int64)
        for j in range(15):
            bucket += r > cutoffs[:, j]
        r = means[dims, bucket]
        v = c + (r @ rotation.T if rotation is not None else r)
        out[start : start + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def ranked(queries: list[np.ndarray], vectors: np.ndarray, offsets: np.ndarray, ids: list[str]) -> list[list[str]]:
    out = []
    for q in queries:
        scores = np.maximum.reduceat(q @ vectors.T, offsets[:-1], axis=1).sum(0)
        out.append([ids[i] for i in np.argsort(-scores, kind="stable")[:10]])
    return out


def main() -> None:
    encoder = MiniLMEncoder()
    keep = encoder._keep
    rows = []
    for name in COLLECTIONS:
        splits = ["train", "test"] if name == "scifact" else ["test"]
        collection, passages, _ = load(name, encoder)
        tokens = passages.tokens(keep)
        offsets = np.concatenate([[0], np.cumsum([len(t) for t in tokens])])
        vectors = np.concatenate(tokens).astype(np.float32)
        del tokens
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), min(len(vectors), 16 * MAX_CENTROIDS), replace=False)]
        codec = ResidualCodec.train(sample, len(vectors))  # as an index fits it: a sample in proportion
        codes = codec.assign(vectors)
        residual = sample - codec.centroids[codec.assign(sample)]
        eigen, axes = np.linalg.eigh(np.cov(residual.T))
        eigen, axes = eigen[::-1], np.ascontiguousarray(axes[:, ::-1], np.float32)
        runs_of: dict[str, list] = {}
        for split in splits:
            coll, _, queries_emb = load(name, encoder, split=split)
            n = min(MAX_QUERIES, len(queries_emb.ids))
            q_tokens = queries_emb.tokens(keep)[:n]
            runs_of[split] = [coll, queries_emb.ids[:n], q_tokens, ranked(q_tokens, vectors, offsets, passages.ids)]
        for label, bits in VARIANTS:
            width = np.full(vectors.shape[1], 2) if bits is None else widths_for(np.maximum(eigen, 0), bits)
            stored = coded(vectors, codec, codes, None if bits is None else axes, width)
            for split, (coll, qids, q_tokens, exact) in runs_of.items():
                got = ranked(q_tokens, stored, offsets, passages.ids)
                exact_run, run = dict(zip(qids, exact)), dict(zip(qids, got))
                rows.append(
                    [
                        f"{name} {split}",
                        label,
                        "/".join(str(int((width == w).sum())) for w in WIDTHS),
                        f"{width.sum() / 8:.0f}",
                        f"{ndcg(exact_run, coll.qrels):.4f}",
                        f"{ndcg(run, coll.qrels):.4f}",
                        f"{fidelity(run, exact_run):.3f}",
                    ]
                )
                print(rows[-1], file=sys.stderr, flush=True)
            del stored
    body = (
        "## Residual coding with fewer bits: rotation and bits by variance (not built yet)\n\n"
        + table(
            [
                "collection",
                "coding",
                "dimensions at 0/1/2/4 bits",
                "residual bytes a token",
                "nDCG@10 float exact",
                "nDCG@10 coded",
                "fidelity@10 to float exact",
            ],
            rows,
        )
        + "\n\nDefault encoder (d=384), default token selection, the codec colcade fits (4,096 centroids); "
        "exhaustive MaxSim over every passage; at most 200 queries a collection. SciFact train is the split a "
        "default would be chosen on; the others are reported."
    )
    write_section("rotation", body, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
