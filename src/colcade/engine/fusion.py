"""Hybrid ranking: late-interaction (MaxSim) scores fused with lexical (BM25) ones per query.

Two fusions, both over the passages the cascade reranked (the lexical index's own finds are
among them, ``cascade.run``):

- ``convex``: MaxSim min-max normalized over this query's candidates, BM25 divided by the
  query's best BM25 score, then ``weight * bm25 + (1 - weight) * maxsim``; a passage the
  lexical index did not return counts 0 on its side (below every passage it returned, which
  min-max would have put at 0 too);
- ``rrf``: reciprocal-rank fusion, ``sum 1 / (60 + rank)`` over the two rankings (Cormack et
  al., 2009); no scores to normalize, and no weight.

>>> pos, fused = fuse(np.array([1, 2, 3]), np.array([3.0, 2.0, 1.0]), np.array([3]), np.array([9.0]), 0.6)
>>> pos.tolist(), [round(f, 2) for f in fused.tolist()]
([3, 1, 2], [0.6, 0.4, 0.2])
"""

from __future__ import annotations

import re

import numpy as np

from colcade.errors import InvalidInputError

# Chosen on SciFact's train queries (benchmarks/hybrid.py), then checked unchanged elsewhere;
# 0.3 until every token was kept (then 0.2 led on train: 0.7240 against 0.7218).
DEFAULT_WEIGHT = 0.2
RRF_K = 60
_WORD = re.compile(r"\w+")


def query_terms(text: str, limit: int = 64) -> list[str]:
    """The distinct words of a query, lower-cased, for the lexical index (order kept).

    >>> query_terms("What is MaxSim? maxsim scores tokens")
    ['what', 'is', 'maxsim', 'scores', 'tokens']
    """
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))[:limit]


def weight_of(hybrid: bool | str | float) -> float | None:
    """The convex weight a ``hybrid=`` argument asks for; None for reciprocal-rank fusion."""
    if hybrid is True:
        return DEFAULT_WEIGHT
    if hybrid == "rrf":
        return None
    if isinstance(hybrid, (int, float, np.integer, np.floating)) and not isinstance(hybrid, bool) and 0 <= hybrid <= 1:
        return float(hybrid)
    raise InvalidInputError(
        f"hybrid must be True, 'rrf' or a weight between 0 and 1 for the lexical side, but got {hybrid!r}"
    )


def _unit(scores: np.ndarray) -> np.ndarray:
    low, high = float(scores.min()), float(scores.max())
    return (scores - low) / (high - low) if high > low else np.ones_like(scores)


def fuse(
    positions: np.ndarray,
    maxsim: np.ndarray,
    lexical: np.ndarray,
    bm25: np.ndarray,
    weight: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates ranked by the fused score, best first: (positions, fused scores).

    ``positions``/``maxsim``: the reranked candidates; ``lexical``/``bm25``: the lexical index's
    finds (a subset of the candidates, or passages the cascade did not score: those are dropped).
    ``weight``: the lexical side's share in a convex fusion; None for reciprocal-rank fusion.
    """
    positions = np.asarray(positions, np.int64)
    if not len(positions):
        return positions, np.zeros(0, np.float32)
    where = {int(p): i for i, p in enumerate(positions)}
    lex_side = np.zeros(len(positions), np.float64)
    found = [(where[int(p)], float(s)) for p, s in zip(lexical, bm25) if int(p) in where]
    if weight is None:
        dense_rank = np.empty(len(positions), np.int64)
        dense_rank[np.lexsort((positions, -maxsim))] = np.arange(1, len(positions) + 1)
        fused = 1.0 / (RRF_K + dense_rank)
        for rank, (i, _) in enumerate(sorted(found, key=lambda f: -f[1]), 1):
            fused[i] += 1.0 / (RRF_K + rank)
    else:
        if found:
            idx = np.array([i for i, _ in found])
            bm25_found = np.array([s for _, s in found])
            best = float(bm25_found.max())
            lex_side[idx] = bm25_found / best if best > 0 else 1.0
        fused = weight * lex_side + (1.0 - weight) * _unit(np.asarray(maxsim, np.float64))
    order = np.lexsort((positions, -np.asarray(maxsim), -fused))  # ties: the better MaxSim first
    return positions[order], fused[order].astype(np.float32)
