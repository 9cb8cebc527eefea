"""The dense shortlist's inverted file: saved once trained, read on open, O(batch) on add."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import clustered_corpus, query_of

from colcade import LateIndex, PrecomputedEncoder
from colcade.engine import partition as partition_module
from colcade.engine import shortlist as shortlist_module

DIM = 32


@pytest.fixture
def small_ivf(monkeypatch):
    """An inverted file above 1,000 passages, so tests exercise it at test size."""
    monkeypatch.setattr(shortlist_module, "IVF_ABOVE", 1000)


@pytest.fixture
def counting(monkeypatch):
    """Counts trainings and passages assigned to lists."""
    counts = {"train": 0, "assigned": 0}
    train, assign = partition_module.Partition.train.__func__, partition_module.Partition.assign

    def counted_train(cls, sample, n, seed=0):
        counts["train"] += 1
        return train(cls, sample, n, seed)

    def counted_assign(self, vectors):
        counts["assigned"] += len(vectors)
        return assign(self, vectors)

    monkeypatch.setattr(partition_module.Partition, "train", classmethod(counted_train))
    monkeypatch.setattr(partition_module.Partition, "assign", counted_assign)
    return counts


def _ids(hits):
    return [h.id for h in hits]


def test_a_reopened_index_reads_its_inverted_file_instead_of_training(tmp_path, small_ivf, counting):
    tokens, queries = clustered_corpus(3000, DIM, seed=3)
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=DIM), storage="float16")
    index.add(ids=[f"d{i}" for i in range(3000)], tokens=tokens)
    wide = {"n_shortlist": 300, "n_prefilter": 100}
    before = [_ids(index.search(query_of(q), k=10, **wide)) for q in queries]
    assert index.stats().shortlist == "ivf" and counting == {"train": 1, "assigned": 3000}
    saved = list((tmp_path / "idx" / "partitions").iterdir())
    assert len(saved) == 1 and saved[0].name.startswith("p3000-")
    assert len(list((tmp_path / "idx" / "segments").glob("*/lists-p3000-*.npy"))) == 1
    index.close()

    reopened = LateIndex.open(tmp_path / "idx")
    after = [_ids(reopened.search(query_of(q), k=10, **wide)) for q in queries]
    assert after == before
    assert counting == {"train": 1, "assigned": 3000}  # nothing trained or assigned again

    # An add assigns only its own passages, and is searchable at once.
    more, _ = clustered_corpus(200, DIM, seed=4)
    reopened.add(ids=[f"e{i}" for i in range(200)], tokens=more)
    hits = reopened.search(query_of(more[7]), k=1, **wide)
    assert hits[0].id == "e7"
    assert counting == {"train": 1, "assigned": 3200}


def test_growing_fourfold_trains_a_new_partition_and_compaction_keeps_it(tmp_path, small_ivf, counting):
    tokens, queries = clustered_corpus(6000, DIM, seed=5)
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=DIM), storage="float16")
    index.add(ids=[f"d{i}" for i in range(1200)], tokens=tokens[:1200])
    assert index.stats().shortlist == "ivf"  # takes the vectors in, as a search would
    index.add(ids=[f"d{i}" for i in range(1200, 6000)], tokens=tokens[1200:])
    assert index.stats().shortlist == "ivf"
    assert counting["train"] == 2  # 6,000 > 4 x 1,200
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "idx" / "partitions").iterdir()) == ["p1200", "p6000"]
    index.delete([f"d{i}" for i in range(100)])
    index.compact()
    wide = {"n_shortlist": 600, "n_prefilter": 100}
    recall = []
    for q in queries:
        want = set(_ids(index.search(query_of(q), k=10, exhaustive=True)))
        recall.append(len(want & set(_ids(index.search(query_of(q), k=10, **wide)))) / 10)
    assert np.mean(recall) >= 0.9
    assert counting["train"] == 2  # the compacted segment is assigned to the saved partition
    assert "d5" not in _ids(index.search(query_of(tokens[5]), k=5, **wide))  # deleted, then compacted away


def test_a_damaged_lists_file_is_assigned_again(tmp_path, small_ivf):
    tokens, queries = clustered_corpus(2000, DIM, seed=6)
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=DIM), storage="float16")
    index.add(ids=[f"d{i}" for i in range(2000)], tokens=tokens)
    before = [_ids(index.search(query_of(q), k=10, n_shortlist=300)) for q in queries]
    index.close()
    (lists,) = (tmp_path / "idx" / "segments").glob("*/lists-*.npy")
    lists.write_bytes(b"not an array")
    reopened = LateIndex.open(tmp_path / "idx")
    assert [_ids(reopened.search(query_of(q), k=10, n_shortlist=300)) for q in queries] == before
    assert np.load(lists).shape == (2000,)  # written again, whole


def test_a_damaged_partition_is_trained_again(tmp_path, small_ivf, counting):
    tokens, queries = clustered_corpus(2000, DIM, seed=7)
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=DIM), storage="float16")
    index.add(ids=[f"d{i}" for i in range(2000)], tokens=tokens)
    assert index.stats().shortlist == "ivf"
    index.close()
    (saved,) = (tmp_path / "idx" / "partitions").iterdir()
    saved.write_bytes(saved.read_bytes()[:200])
    reopened = LateIndex.open(tmp_path / "idx")
    hits = reopened.search(query_of(tokens[42]), k=1, n_shortlist=300)
    assert hits[0].id == "d42" and counting["train"] == 2


def test_the_inverted_file_does_not_copy_the_dense_vectors(tmp_path, small_ivf):
    # Above IVF_ABOVE the shortlist scores the segments' mapped vectors: what it holds in RAM is
    # its centroids and one position per passage, not a float32 copy of every dense vector.
    tokens, _ = clustered_corpus(3000, DIM, seed=8)
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=DIM), storage="float16")
    index.add(ids=[f"d{i}" for i in range(3000)], tokens=tokens)
    shortlist = index._store.refresh().shortlist
    assert shortlist.kind == "ivf"
    assert shortlist.nbytes() < 3000 * DIM * 4 / 2


def test_deleted_neighbours_do_not_starve_the_inverted_file(tmp_path, small_ivf):
    # The probe widens until it finds n live passages: deleting everything near a query
    # (without compacting) must not leave a search with fewer than k hits.
    tokens, queries = clustered_corpus(3000, DIM, seed=11)
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=DIM), storage="float16")
    index.add(ids=[f"d{i}" for i in range(3000)], tokens=tokens)
    q = query_of(queries[0])
    near = _ids(index.search(q, k=1500, exhaustive=True))
    index.delete(near)
    hits = index.search(q, k=10, n_shortlist=100, n_prefilter=100)
    assert len(hits) == 10 and not set(_ids(hits)) & set(near)


def test_a_partition_fitted_to_content_that_has_gone_is_trained_again(tmp_path, small_ivf, counting):
    old, _ = clustered_corpus(5000, DIM, seed=12)
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=DIM), storage="float16")
    index.add(ids=[f"o{i}" for i in range(5000)], tokens=old)
    assert index.stats().shortlist == "ivf"
    index.delete([f"o{i}" for i in range(5000)])
    index.compact()
    shift = np.random.default_rng(0).standard_normal(DIM).astype(np.float32)
    shift /= np.linalg.norm(shift)
    new = [(t + 1.2 * shift) / np.linalg.norm(t + 1.2 * shift, axis=1, keepdims=True) for t in old[:3000]]
    index.add(ids=[f"n{i}" for i in range(3000)], tokens=new)  # other content, 3,000 >= 5,000 / 4
    shortlist = index._store.refresh().shortlist
    assert shortlist.kind == "ivf" and shortlist.inverted.fits()
    assert counting["train"] == 2
    assert [p.name.split("-")[0] for p in (tmp_path / "idx" / "partitions").iterdir()] == ["p3000"]  # stale one gone


def test_an_empty_lists_file_is_assigned_again(tmp_path, small_ivf):
    tokens, queries = clustered_corpus(2000, DIM, seed=14)
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=DIM), storage="float16")
    index.add(ids=[f"d{i}" for i in range(2000)], tokens=tokens)
    assert index.stats().shortlist == "ivf"
    index.close()
    (lists,) = (tmp_path / "idx" / "segments").glob("*/lists-*.npy")
    lists.write_bytes(b"")
    (partition,) = (tmp_path / "idx" / "partitions").iterdir()
    np.save(partition, np.zeros(5, np.float32))  # valid .npy, wrong shape
    reopened = LateIndex.open(tmp_path / "idx")
    assert reopened.search(query_of(tokens[9]), k=1, n_shortlist=300)[0].id == "d9"
