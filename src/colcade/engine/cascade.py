"""The three stages of a search as one plan: shortlist -> prefilter -> rerank.

1. shortlist: every allowed passage when the corpus (after filtering) is small enough to scan
   outright, which is exact where the dense vector is the weak link; else the dense shortlist
   (``shortlist.py``), joined in compressed indexes by token-level candidates: the passages
   that score best by centroid interaction over each query token's best ``n_cells`` centroids,
   read from their posting lists (``postings.py``, PLAID's candidate generation);
2. prefilter: a cheap MaxSim keeps the ``n_prefilter`` best: over each token's centroid alone
   for compressed segments (PLAID's centroid interaction), over sign bits (inverted Hamming)
   for float16 ones;
3. rerank: float MaxSim on those over the stored vectors (decoded from their codes when
   compressed), the final order and scores.

Widths default from the corpus size and ``k``; with every stage at full width the result is
exhaustive MaxSim exactly (same kernel, same tie-break: score, then insertion order).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from colcade.encoders.base import EncodedQuery
from colcade.engine.codec import ResidualCodec
from colcade.engine.kernels import (
    binarize,
    maxsim,
    maxsim_codes,
    maxsim_hamming,
    maxsim_residual,
    pad_lanes,
    top_rows,
)
from colcade.engine.shortlist import DenseShortlist
from colcade.errors import InvalidInputError
from colcade.results import StageStats
from colcade.storage.segments import Segment
from colcade.storage.store import State

FULL_SCAN_BELOW = 8192  # passages: scanning all their bits costs ~5 ms at ~1.5 M passages/s
# Centroids a query token takes candidates from. Posting lists grow with the corpus while the dense
# shortlist covers less of it, so large indexes take more: chosen on SciFact's train queries (1 at
# its 5k passages, full scan off) and on 100k synthetic passages of another seed than the
# benchmark's (benchmarks/cells.py). There, one in 1,024 of the codebook's centroids was the best
# tried both with 4,096 centroids (4 cells: text fidelity@10 0.980 against 0.963 for 1) and with
# the 16,384 of a two-level codebook (16 cells: text 0.990 against 0.968 for 4, patches 0.890
# against 0.710; a finer cell holds fewer passages, so it takes more of them for the same reach).
N_CELLS, N_CELLS_LARGE, LARGE, CENTROIDS_A_CELL = 1, 4, 50_000, 1024
# A compressed index's prefilter width was chosen on SciFact's train queries (median 21 tokens).
# A shorter query's centroid ranking is noisier (it sums fewer token scores) and its rerank is
# cheaper, so it keeps as many passages as the rerank scores in the time of the base width at
# 17-32 tokens. The compressed kernel's time a passage by query tokens, relative to 17-32 (one
# thread, SciFact's train corpus, 1,000 passages x 120 tokens: 17.1 / 20.2 / 25.2 ms at <= 8 /
# 9-16 / 17-32 tokens when chosen, 0.70 / 0.81 of the last in benchmarks/prefilter.py's rerun;
# decoding a passage costs the same for any query, products come in 8- and 16-wide registers):
# (at most this many query tokens, relative time).
RERANK_COST = ((8, 0.68), (16, 0.80))
# Above LARGE passages (compressed), the posting lists hand on twice the dense shortlist's count and
# the prefilter keeps twice as many: on benchmarks/cells.py's 100k passages (seed 7, 16 cells),
# keeping 400 took text fidelity@10 0.990 -> 0.997 and patches 0.887 -> 0.935, and 4,096 token
# candidates took patches on to 0.952 (8,192: 0.960, for twice the prefilter's added time).
LARGE_WIDENING = 2


@dataclass(frozen=True)
class Widths:
    """How many passages each stage keeps."""

    n_shortlist: int
    n_prefilter: int
    n_cells: int = 0
    n_tokens: int = 0  # token candidates the posting lists hand on (0 with n_cells 0)


def plan(
    n_allowed: int,
    k: int,
    n_shortlist: int | None = None,
    n_prefilter: int | None = None,
    exhaustive: bool = False,
    full_scan_below: int = FULL_SCAN_BELOW,
    compressed: bool = False,
    n_cells: int | None = None,
    n_query_tokens: int | None = None,
    codebook: int = 0,
) -> Widths:
    """Stage widths for a corpus of ``n_allowed`` passages (after filtering).

    A compressed index's prefilter (each token scored by its centroid alone) is coarser than
    sign bits, so it keeps twice as many: on SciFact's train queries, keeping 100 lost 0.0017
    nDCG@10 against exhaustive MaxSim over the same codes, keeping 200 lost none (fidelity 0.998).
    Those queries' median is 21 tokens; a query of at most 16 ``n_query_tokens`` keeps as many
    as its rerank scores in the same time (``RERANK_COST``: 295 at <= 8 tokens, 250 at 9-16),
    since its centroid ranking is noisier (benchmarks/prefilter.py measures both).

    Token-level candidates (``n_cells``, compressed indexes only) join the dense shortlist when
    there is one; 0 turns them off. Above ``LARGE`` passages a query token takes them from one in
    ``CENTROIDS_A_CELL`` of the ``codebook``'s centroids (the largest codec's), 4 at least, the
    lists hand on ``LARGE_WIDENING`` times the shortlist's count (``n_tokens``), and the default
    prefilter keeps ``LARGE_WIDENING`` times as many.

    >>> plan(1_000, 10)
    Widths(n_shortlist=1000, n_prefilter=100, n_cells=0, n_tokens=0)
    >>> plan(100_000, 10)
    Widths(n_shortlist=2048, n_prefilter=100, n_cells=0, n_tokens=0)
    >>> plan(20_000, 10, compressed=True)
    Widths(n_shortlist=2048, n_prefilter=200, n_cells=1, n_tokens=2048)
    >>> plan(100_000, 10, compressed=True)
    Widths(n_shortlist=2048, n_prefilter=400, n_cells=4, n_tokens=4096)
    >>> plan(100_000, 10, compressed=True, codebook=16384)
    Widths(n_shortlist=2048, n_prefilter=400, n_cells=16, n_tokens=4096)
    >>> plan(100_000, 10, compressed=True, n_query_tokens=7)
    Widths(n_shortlist=2048, n_prefilter=589, n_cells=4, n_tokens=4096)
    >>> plan(100_000, 10, exhaustive=True)
    Widths(n_shortlist=100000, n_prefilter=100000, n_cells=0, n_tokens=0)
    """
    for name, value in (("n_shortlist", n_shortlist), ("n_prefilter", n_prefilter)):
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0):
            raise InvalidInputError(f"{name} must be a positive integer, but got {value!r}")
    if n_cells is not None and (not isinstance(n_cells, (int, np.integer)) or isinstance(n_cells, bool) or n_cells < 0):
        raise InvalidInputError(f"n_cells must be a non-negative integer, but got {n_cells!r}")
    if exhaustive:
        return Widths(n_allowed, n_allowed)
    if n_shortlist is None:
        n_shortlist = n_allowed if n_allowed <= full_scan_below else max(2048, 64 * k)
    n_shortlist = min(int(n_shortlist), n_allowed)
    large = n_allowed > LARGE
    widen = LARGE_WIDENING if large and compressed else 1
    if n_prefilter is None:
        n_prefilter = widen * max(200, 20 * k) if compressed else max(100, 10 * k)
        if compressed and n_query_tokens:
            cost = next((c for most, c in RERANK_COST if n_query_tokens <= most), 1.0)
            n_prefilter = math.ceil(n_prefilter / cost)
    default_cells = max(N_CELLS_LARGE, codebook // CENTROIDS_A_CELL) if large else N_CELLS
    cells = (default_cells if n_cells is None else int(n_cells)) if compressed and n_shortlist < n_allowed else 0
    tokens = min(widen * n_shortlist, n_allowed) if cells else 0
    return Widths(n_shortlist, min(int(n_prefilter), max(n_shortlist, tokens)), cells, tokens)


def _top(positions: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n best by score, ties broken by position (so results never depend on the stage widths)."""
    if n < len(scores):
        cut = np.partition(scores, len(scores) - n)[len(scores) - n]
        keep = scores >= cut  # keeps every tie at the cut; the sort below settles them
        positions, scores = positions[keep], scores[keep]
    order = np.lexsort((positions, -scores))[:n]
    return positions[order], scores[order]


def _score(state: State, positions: np.ndarray, kernel: Callable[..., np.ndarray], *args: Any) -> np.ndarray:
    scores: np.ndarray | None = None
    for seg, local, idx in state.locate(positions):
        part = kernel(seg, local, *args)
        if scores is None:
            scores = np.empty(len(positions), dtype=part.dtype)
        scores[idx] = part
    return scores if scores is not None else np.zeros(0, np.float32)


class _Prefilter:
    """The prefilter's kernel for each kind of segment, with what it needs of the query computed once."""

    def __init__(self, q: np.ndarray, mixed: bool) -> None:
        self.q = q
        # Beside compressed segments, float16 ones (a compressed index's first, small writes)
        # are scored exactly: sign-bit scores are on another scale than centroid scores.
        self.mixed = mixed
        self._bits: np.ndarray | None = None
        self._tables: dict[str, np.ndarray] = {}  # codec name -> centroid-query scores [k, nq]
        self._padded: dict[str, np.ndarray] = {}  # the same, rows padded for the codes kernel

    def table(self, codec: ResidualCodec) -> np.ndarray:
        """Every centroid's score against every query token, [k, nq] (once per codec)."""
        table = self._tables.get(codec.name)
        if table is None:
            table = self._tables[codec.name] = np.ascontiguousarray(codec.centroids @ self.q.T)
        return table

    def __call__(self, seg: Segment, local: np.ndarray) -> np.ndarray:
        if seg.codec is not None:
            assert seg.codes is not None
            padded = self._padded.get(seg.codec.name)
            if padded is None:
                padded = self._padded[seg.codec.name] = pad_lanes(self.table(seg.codec))
            return maxsim_codes(padded, seg.codes, seg.offsets, local, nq=len(self.q))
        if self.mixed:
            return _float(seg, local, self.q)
        if self._bits is None:
            self._bits = binarize(self.q)
        assert seg.bits is not None
        return maxsim_hamming(self._bits, seg.bits, seg.offsets, local, self.q.shape[1]).astype(np.float32)


def _token_candidates(
    state: State, prefilter: _Prefilter, n_cells: int, n: int, allowed: np.ndarray | None
) -> np.ndarray:
    """Positions of the ``n`` live (allowed) passages that score best by centroid interaction
    over each query token's ``n_cells`` best centroids, read from the posting lists (PLAID's
    candidate generation): a passage under one of a query token's cells gains that cell's score
    over the next best centroid's, the token's best such cell counting once. Each segment's
    kernel keeps its own ``n`` best, so no list of the ~10^5-10^6 passages touched at a million
    comes back to numpy.
    """
    positions, scores = [], []
    passable: np.ndarray | None = None  # which positions may come back; None: every one
    if allowed is not None:
        passable = np.zeros(len(state.live), bool)
        passable[allowed] = True
        passable &= state.live
    elif state.n_live < len(state.live):
        passable = state.live
    for seg, base in zip(state.segments, state.bases):
        if seg.codec is None or seg.postings is None:
            continue
        table = prefilter.table(seg.codec)  # [k, nq]
        m = min(n_cells + 1, len(table))
        top, top_scores = top_rows(table, m)
        floor = top_scores[n_cells] if m > n_cells else np.zeros(table.shape[1], np.float32)
        # Every centroid taken (n_cells >= k): gains are raw scores, and a cell below 0 earns nothing.
        cells, gains = top[:n_cells].T, np.maximum(top_scores[:n_cells] - floor, 0).T
        mask = None if passable is None else passable[int(base) : int(base) + seg.n]
        local, score = seg.postings.scores(cells, gains, limit=max(1, seg.n // 4), keep=n, allowed=mask)
        positions.append(local.astype(np.int64) + int(base))
        scores.append(score)
    if not positions:
        return np.zeros(0, np.int64)
    pos, score = np.concatenate(positions), np.concatenate(scores)
    if len(pos) > n:
        pos = pos[np.argpartition(-score, n - 1)[:n]]
    return np.sort(pos)


def _float(seg: Segment, local: np.ndarray, q: np.ndarray) -> np.ndarray:
    if seg.codec is not None:
        assert seg.codes is not None and seg.residuals is not None
        return maxsim_residual(q, seg.codec, seg.codes, seg.residuals, seg.offsets, local)
    assert seg.tokens is not None
    return maxsim(q, seg.tokens, seg.offsets, local)


def run(
    state: State,
    shortlist: DenseShortlist,
    query: EncodedQuery,
    k: int,
    widths: Widths,
    allowed: np.ndarray | None,
    lexical: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[StageStats]]:
    """Positions and MaxSim scores of the best ``k`` passages, with per-stage stats.

    ``allowed``: sorted positions a filter lets through (None: every live passage).
    ``lexical``: positions the lexical index found (allowed ones only): stage 1 takes them in
    beside the dense shortlist, and the prefilter always passes them on, so a passage that shares
    only rare words with the query reaches the rerank.
    """
    stats = []
    n_allowed = state.n_live if allowed is None else len(allowed)

    t0 = time.perf_counter()
    q = np.ascontiguousarray(query.tokens, np.float32)
    mixed = any(s.codec is not None for s in state.segments) and any(s.codec is None for s in state.segments)
    prefilter = _Prefilter(q, mixed)
    if widths.n_shortlist >= n_allowed:
        cand = np.flatnonzero(state.live) if allowed is None else allowed
    else:
        cand = shortlist.search(query.dense, widths.n_shortlist, state.live, allowed)
        if widths.n_cells:
            cand = np.union1d(cand, _token_candidates(state, prefilter, widths.n_cells, widths.n_tokens, allowed))
        if lexical is not None and len(lexical):
            cand = np.union1d(cand, lexical)
    t1 = time.perf_counter()
    stats.append(StageStats("shortlist", n_allowed, len(cand), (t1 - t0) * 1e3))

    if widths.n_prefilter < len(cand):
        cand, _ = _top(cand, _score(state, cand, prefilter), widths.n_prefilter)
        if lexical is not None and len(lexical):
            cand = np.union1d(cand, lexical)
    t2 = time.perf_counter()
    stats.append(StageStats("prefilter", stats[-1].candidates_out, len(cand), (t2 - t1) * 1e3))

    positions, scores = _top(cand, _score(state, cand, _float, q), k)
    t3 = time.perf_counter()
    stats.append(StageStats("rerank", stats[-1].candidates_out, len(positions), (t3 - t2) * 1e3))
    return positions, scores, stats
