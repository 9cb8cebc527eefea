"""Token-level candidates: centroid posting lists join the dense shortlist in compressed indexes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_compression import N, passages

from colcade import EncodedQuery, LateIndex, PrecomputedEncoder
from colcade.engine.postings import Postings
from colcade.errors import InvalidInputError

D = 64


@pytest.fixture
def hidden(tmp_path):
    """A compressed index where passage p7's dense vector points away from its own tokens."""
    docs = passages(N, D, seed=21)
    dense = np.stack([p.mean(0) / np.linalg.norm(p.mean(0)) for p in docs])
    dense[7] = -dense[7]
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=D))
    index.add(ids=[f"p{i}" for i in range(N)], tokens=docs, dense=dense, metadatas=[{"n": i} for i in range(N)])
    assert index._store.state.segments[0].codec is not None
    query = EncodedQuery(dense=docs[7].mean(0), tokens=docs[7][:8])
    return index, query, tmp_path / "idx"


def test_a_passage_the_dense_vector_misses_is_found_by_its_tokens(hidden):
    index, query, _ = hidden
    narrow = {"n_shortlist": 100, "n_prefilter": 20}
    assert "p7" not in [h.id for h in index.search(query, k=5, n_cells=0, **narrow)]
    hits = index.search(query, k=5, **narrow)  # token candidates on by default
    assert hits[0].id == "p7"
    assert hits.stats[0].candidates_out > 100  # the shortlist stage took more than the dense 100
    exact = index.search(query, k=5, exhaustive=True)
    assert [(h.id, h.score) for h in hits][:3] == [(h.id, h.score) for h in exact][:3]


def test_token_candidates_respect_filters_and_deletions(hidden):
    index, query, _ = hidden
    narrow = {"n_shortlist": 100, "n_prefilter": 20}
    assert "p7" not in [h.id for h in index.search(query, k=5, filter={"n": {"$ne": 7}}, **narrow)]
    some = list(range(7, 37))
    only = index.search(query, k=5, filter={"n": {"$in": some}}, n_shortlist=20, n_prefilter=20)
    assert {h.id for h in only} <= {f"p{i}" for i in some} and only[0].id == "p7"
    index.delete(["p7"])
    assert "p7" not in [h.id for h in index.search(query, k=5, **narrow)]


def test_postings_are_each_centroids_passages_written_with_the_segment_and_rebuilt_when_damaged(hidden):
    index, query, folder = hidden
    (seg,) = index._store.state.segments
    files = folder / "segments" / seg.name
    assert (files / "postings-ids.npy").is_file()  # the writer built them: no reader has to
    codes, offsets = np.asarray(seg.codes), np.asarray(seg.offsets)
    owner = np.repeat(np.arange(seg.n), np.diff(offsets))
    for c in np.unique(codes)[:50]:
        want = np.unique(owner[codes == c])
        np.testing.assert_array_equal(seg.postings.passages(int(c)), want)
    built = Postings.build(codes, offsets, seg.codec.k)
    assert len(built) == len(np.unique(codes.astype(np.int64) * seg.n + owner))  # one entry a (centroid, passage)
    backwards = built.starts.copy()
    backwards[1] = len(built.lists) + 1
    for damage in (b"", b"garbage", np.lib.format.magic(1, 0) + b"\x10\x00{}", backwards):
        bad = files / "bad.tmp"
        if isinstance(damage, bytes):
            bad.write_bytes(damage)
        else:
            np.save(bad.with_suffix(".npy"), damage)
            bad = bad.with_suffix(".npy")
        os.replace(bad, files / "postings-blocks.npy")  # a new file: readers mapping the old one keep it
        rebuilt = Postings.of(files, codes, offsets, seg.codec.k)
        np.testing.assert_array_equal(rebuilt.starts, built.starts)
        np.testing.assert_array_equal(rebuilt.lists, built.lists)
        np.testing.assert_array_equal(np.load(files / "postings-blocks.npy"), built.starts)  # written again


@pytest.mark.parametrize("old", [("postings.npy", "postings-starts.npy"), ("postings-ef.npy", "postings-heads.npy")])
def test_segments_with_lists_of_an_older_format_get_blocked_ones(hidden, old):
    index, query, folder = hidden
    (seg,) = index._store.state.segments
    files = folder / "segments" / seg.name
    before = [h.id for h in index.search(query, k=5, n_shortlist=100, n_prefilter=20)]
    index.close()
    for name in ("postings-ids.npy", "postings-blocks.npy"):  # as an index written before them
        (files / name).unlink()
    for name in old:
        np.save(files / name, np.zeros(3, np.int64))
    reopened = LateIndex.open(folder)
    assert [h.id for h in reopened.search(query, k=5, n_shortlist=100, n_prefilter=20)] == before
    assert (files / "postings-ids.npy").is_file() and not any((files / name).exists() for name in old)
    reopened.close()


def test_n_cells_is_checked(hidden):
    index, query, _ = hidden
    with pytest.raises(InvalidInputError, match="n_cells"):
        index.search(query, k=5, n_cells=-1)


def test_n_cells_past_the_codebook_takes_every_centroid(hidden):
    """With every centroid a cell there is no next-best to gain over: raw scores, those below 0
    earning nothing (a kernel that refuses negative gains must never see one)."""
    index, query, _ = hidden
    (seg,) = index._store.state.segments
    narrow = {"n_shortlist": 20, "n_prefilter": 10}
    every = [h.id for h in index.search(query, k=3, n_cells=seg.codec.k, **narrow)]
    assert every == [h.id for h in index.search(query, k=3, n_cells=seg.codec.k + 1, **narrow)]
    assert every[0] == "p7"


def test_token_candidates_lift_fidelity_with_the_full_scan_off(tmp_path):
    # Passages that are bags of unrelated topics (ColPali patches, mixed documents): the pooled
    # vector is a poor guide, each token's centroid a good one.
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((300, D)).astype(np.float32)
    docs = []
    for _ in range(1500):
        picks = centres[rng.integers(0, 300, rng.integers(8, 20))]
        v = picks + 0.3 * rng.standard_normal(picks.shape).astype(np.float32)
        docs.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=D))
    index.add(ids=[f"d{i}" for i in range(len(docs))], tokens=docs)
    assert index._store.state.segments[-1].codec is not None
    fidelity: dict[int, list[float]] = {0: [], 1: [], 4: []}
    for i in range(0, 300, 10):
        q = EncodedQuery(dense=docs[i][:4].mean(0), tokens=docs[i][:4])
        want = {h.id for h in index.search(q, k=10, exhaustive=True)}
        for cells in fidelity:
            got = {h.id for h in index.search(q, k=10, n_shortlist=200, n_prefilter=100, n_cells=cells)}
            fidelity[cells].append(len(want & got) / 10)
    # Each topic spreads over several centroids here, so more cells find more (measured: 0.75,
    # 0.86, 0.97); on real text one cell is the default (README).
    assert np.mean(fidelity[4]) >= 0.95 > np.mean(fidelity[1]) > np.mean(fidelity[0]) + 0.05


def test_a_centroid_every_passage_has_is_passed_over(tmp_path):
    # Like [CLS] or "the": a token in every passage would make stage 1 a full scan.
    docs = passages(N, D, seed=22)
    common = np.ones((1, D), np.float32) / np.sqrt(D)
    docs = [np.concatenate([p, common]) for p in docs]
    index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=D))
    index.add(ids=[f"p{i}" for i in range(N)], tokens=docs)
    query = EncodedQuery(dense=docs[3].mean(0), tokens=np.concatenate([docs[3][:4], common]))
    hits = index.search(query, k=5, n_shortlist=50, n_prefilter=20)
    assert hits[0].id == "p3"
    assert 50 < hits.stats[0].candidates_out <= 100  # the dense 50 and at most 50 more, not all 900
