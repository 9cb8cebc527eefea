"""The cascade against exhaustive MaxSim: exact at full width, faithful at default width."""

import numpy as np
import pytest
from conftest import clustered_corpus, exhaustive_maxsim, query_of, scifact_lengths
from hypothesis import given, settings
from hypothesis import strategies as st

from colcade import LateIndex, PrecomputedEncoder
from colcade.engine.cascade import plan


def build(tokens, dim, chunks=1, **kw):
    index = LateIndex.in_memory(
        encoder=PrecomputedEncoder(dim=dim), storage="float16"
    )  # exact: compared to float MaxSim
    ids = [f"d{i}" for i in range(len(tokens))]
    for part in np.array_split(np.arange(len(tokens)), chunks):  # several segments
        if len(part):
            index.add(
                ids=[ids[i] for i in part], tokens=[tokens[i] for i in part], metadatas=[{"n": int(i)} for i in part]
            )
    return index


def exhaustive_ids(query, tokens, k, allowed=None):
    scores = exhaustive_maxsim(query, tokens)
    order = np.lexsort((np.arange(len(tokens)), -scores))  # ties: insertion order, as colcade
    if allowed is not None:
        order = [i for i in order if i in allowed]
    return [f"d{i}" for i in order[:k]], scores


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 60),
    dim=st.sampled_from([8, 32, 128]),
    k=st.integers(1, 70),
    chunks=st.integers(1, 4),
    seed=st.integers(0, 999),
)
def test_full_width_equals_exhaustive_maxsim(n, dim, k, chunks, seed):
    tokens, queries = clustered_corpus(n, dim, seed=seed, lengths=np.random.default_rng(seed).integers(1, 40, n))
    index = build(tokens, dim, chunks)
    for q in queries[:4]:
        hits = index.search(query_of(q), k=k, n_shortlist=n, n_prefilter=n)
        want, scores = exhaustive_ids(q, tokens, k)
        # numpy's and the kernel's sums round differently, so passages tied to the last bit may
        # swap: the exact scores of what came back are the best k, each hit scored as itself.
        got = [int(h.id[1:]) for h in hits]
        np.testing.assert_allclose(scores[got], scores[[int(i[1:]) for i in want]], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose([h.score for h in hits], scores[got], rtol=1e-4, atol=1e-3)
        # The same kernel and tie-break at full width and exhaustively: identical, to the order.
        assert [h.id for h in index.search(query_of(q), k=k, exhaustive=True)] == [h.id for h in hits]


def test_full_width_equals_exhaustive_on_real_shaped_data():
    lengths = scifact_lengths(600)  # token counts of real SciFact passages
    tokens, queries = clustered_corpus(len(lengths), 128, seed=3, lengths=lengths)
    index = build(tokens, 128, chunks=3)
    for q in queries:
        want, _ = exhaustive_ids(q, tokens, 10)
        assert [h.id for h in index.search(query_of(q), k=10, exhaustive=True)] == want
        # Forcing every stage on (dense shortlist and prefilter), at full width, changes nothing.
        assert [h.id for h in index.search(query_of(q), k=10, n_shortlist=600, n_prefilter=600)] == want


def test_narrow_cascade_keeps_most_of_the_exhaustive_top10():
    tokens, queries = clustered_corpus(3000, 64, seed=5)
    index = build(tokens, 64, chunks=2)
    recalls = []
    for q in queries:
        want, _ = exhaustive_ids(q, tokens, 10)
        got = index.search(query_of(q), k=10, n_shortlist=300, n_prefilter=50)
        stages = {s.name: s for s in got.stats}
        assert stages["shortlist"].candidates_out == 300 and stages["prefilter"].candidates_out == 50
        recalls.append(len(set(want) & {h.id for h in got}) / 10)
    assert np.mean(recalls) >= 0.9


def test_small_corpus_scans_everything_by_default():
    tokens, queries = clustered_corpus(500, 32, seed=2)
    index = build(tokens, 32)
    hits = index.search(query_of(queries[0]), k=5)
    assert hits.stats[0].candidates_out == 500  # no dense shortlist: every passage's bits are scored
    assert [h.id for h in hits] == exhaustive_ids(queries[0], tokens, 5)[0]


def test_filter_is_applied_before_ranking():
    tokens, queries = clustered_corpus(400, 32, seed=4)
    index = build(tokens, 32)
    allowed = {i for i in range(400) if i % 7 == 0}
    for q in queries[:6]:
        hits = index.search(query_of(q), k=10, filter={"n": {"$in": sorted(allowed)}})
        assert [h.id for h in hits] == exhaustive_ids(q, tokens, 10, allowed)[0]
        # Narrow stages over the filtered set still only see allowed passages.
        narrow = index.search(query_of(q), k=10, filter={"n": {"$in": sorted(allowed)}}, n_shortlist=20, n_prefilter=12)
        assert {int(h.id[1:]) for h in narrow} <= allowed


def test_deleted_passages_never_come_back_from_the_shortlist():
    tokens, queries = clustered_corpus(2000, 32, seed=6)
    index = build(tokens, 32)
    q = queries[0]
    top = [h.id for h in index.search(query_of(q), k=20, exhaustive=True)]
    index.delete(top[:10])
    hits = index.search(query_of(q), k=10, n_shortlist=100, n_prefilter=30)
    assert not set(top[:10]) & {h.id for h in hits}
    assert [h.id for h in index.search(query_of(q), k=10, exhaustive=True)] == top[10:20]


def test_scores_and_normalized_scores():
    index = build([np.eye(4, dtype=np.float32)[:2]], 4)
    hits = index.search(query_of(np.eye(4, dtype=np.float32)[[0, 1, 3]]), k=1)
    assert hits[0].score == pytest.approx(2.0)  # two query tokens match exactly, one matches nothing
    assert hits[0].normalized_score == pytest.approx(2.0 / 3)
    assert [s.name for s in hits.stats] == ["shortlist", "prefilter", "rerank"]
    assert all(s.ms >= 0 for s in hits.stats)


def test_plan_defaults_scale_with_corpus_and_k():
    assert plan(100, 10) == plan(100, 10, exhaustive=True)
    big = plan(1_000_000, 10)
    assert big.n_shortlist < 1_000_000 and big.n_prefilter >= 10
    assert plan(1_000_000, 100).n_prefilter >= 100
    assert plan(50, 10, n_shortlist=10_000).n_shortlist == 50
    assert plan(10_000, 5, n_shortlist=30, n_prefilter=500).n_prefilter == 30


def test_a_large_compressed_index_widens_its_token_candidates_and_prefilter():
    from colcade.engine.cascade import LARGE, LARGE_WIDENING, RERANK_COST

    small, large = plan(LARGE, 10, compressed=True), plan(LARGE + 1, 10, compressed=True)
    assert (small.n_tokens, small.n_prefilter) == (small.n_shortlist, 200)
    assert (large.n_tokens, large.n_prefilter) == (LARGE_WIDENING * large.n_shortlist, LARGE_WIDENING * 200)
    short = plan(LARGE + 1, 10, compressed=True, n_query_tokens=8)
    assert short.n_prefilter * RERANK_COST[0][1] >= LARGE_WIDENING * 200 > (short.n_prefilter - 1) * RERANK_COST[0][1]
    assert plan(LARGE + 1, 10, compressed=True, n_prefilter=50).n_prefilter == 50  # asked for
    assert plan(LARGE + 1, 10).n_prefilter == 100  # sign bits: unchanged
    assert plan(LARGE + 1, 10, compressed=True, n_cells=0).n_tokens == 0
    assert plan(LARGE + 1, 10, compressed=True, n_shortlist=40_000).n_tokens == LARGE + 1  # never past the corpus


def test_a_short_query_gets_a_wider_compressed_prefilter_for_the_same_rerank_time():
    from colcade.engine.cascade import RERANK_COST

    assert plan(20_000, 10, compressed=True, n_query_tokens=21).n_prefilter == 200
    assert plan(20_000, 10, compressed=True, n_query_tokens=64).n_prefilter == 200  # never narrower
    widths = [plan(20_000, 10, compressed=True, n_query_tokens=n).n_prefilter for n in (1, 8, 9, 16, 17)]
    assert widths == sorted(widths, reverse=True) and widths[0] == widths[1] > widths[2] == widths[3] > widths[4]
    for (_, cost), width in zip(RERANK_COST, widths[1::2]):  # at 8 and at 16 tokens
        assert width * cost >= 200 > (width - 1) * cost  # the same time as 200 passages at 17-32 tokens
    assert plan(20_000, 10, n_query_tokens=4).n_prefilter == 100  # sign bits: unchanged
    assert plan(20_000, 10, compressed=True, n_prefilter=50, n_query_tokens=4).n_prefilter == 50  # asked for
    assert plan(250, 10, compressed=True, n_query_tokens=1).n_prefilter == 250  # at most the shortlist


def test_batch_search_matches_single_searches():
    tokens, queries = clustered_corpus(300, 32, seed=8)
    index = build(tokens, 32)
    batch = index.search_batch([query_of(q) for q in queries], k=5, n_threads=2)
    assert [[h.id for h in hits] for hits in batch] == [[h.id for h in index.search(query_of(q), k=5)] for q in queries]
