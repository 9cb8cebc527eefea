"""LateIndex: persistence, updates, text through an encoder, stats."""

import numpy as np
import pytest
from conftest import clustered_corpus, query_of, word_encoder

from colcade import EncoderMismatchError, LateIndex, PrecomputedEncoder

TEXTS = [
    "Solar panels convert sunlight into electricity.",
    "Wind turbines turn moving air into power.",
    "The violin is a bowed string instrument.",
    "Photosynthesis lets plants turn sunlight into sugar.",
    "A cello is larger than a violin and sounds lower.",
]
META = [{"topic": "energy"}, {"topic": "energy"}, {"topic": "music"}, {"topic": "biology"}, {"topic": "music"}]


def test_text_search_finds_the_passage_sharing_words(encoder):
    index = LateIndex.in_memory(encoder=encoder)
    index.add(TEXTS, ids=[f"t{i}" for i in range(5)], metadatas=META)
    hits = index.search("violin instrument", k=2)
    assert hits[0].id == "t2" and hits[0].text == TEXTS[2] and hits[0].metadata == {"topic": "music"}
    assert [h.id for h in index.search("sunlight", k=5, filter={"topic": "biology"})] == ["t3"]


def test_saved_index_answers_identically_after_reopen(tmp_path, encoder):
    tokens, queries = clustered_corpus(700, 64, seed=1)
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=64, name="vecs"))
    index.add(ids=[f"d{i}" for i in range(400)], tokens=tokens[:400], metadatas=[{"i": i} for i in range(400)])
    index.add(
        ids=[f"d{i}" for i in range(400, 700)], tokens=tokens[400:], metadatas=[{"i": i} for i in range(400, 700)]
    )
    before = [[(h.id, h.score, h.metadata) for h in index.search(query_of(q), k=10)] for q in queries]
    index.close()
    reopened = LateIndex.open(tmp_path / "idx")
    assert len(reopened) == 700 and reopened.encoder.name == "vecs"
    after = [[(h.id, h.score, h.metadata) for h in reopened.search(query_of(q), k=10)] for q in queries]
    assert after == before


def test_reopen_refuses_another_encoder(tmp_path, encoder):
    LateIndex.create(tmp_path / "idx", encoder=encoder).close()
    with pytest.raises(EncoderMismatchError, match="hashed-words"):
        LateIndex.open(tmp_path / "idx", encoder=PrecomputedEncoder(dim=64, name="other"))
    assert LateIndex.open(tmp_path / "idx", encoder=word_encoder()).encoder.name == "hashed-words"


def test_add_delete_upsert_compact_survive_reopen(tmp_path, encoder):
    path = tmp_path / "idx"
    index = LateIndex.create(path, encoder=encoder)
    index.add(TEXTS, ids=[f"t{i}" for i in range(5)], metadatas=META)
    assert index.search("violin", k=1)[0].id == "t2"

    index.delete(["t2"])
    assert "t2" not in {h.id for h in index.search("violin", k=5)}
    index.upsert(["A trumpet is a brass instrument."], ids=["t4"], metadatas=[{"topic": "brass"}])
    assert index.search("trumpet brass", k=1)[0].id == "t4"
    assert index.get(["t4"])[0]["metadata"] == {"topic": "brass"}
    assert len(index) == 4

    index = LateIndex.open(path, encoder=word_encoder())
    assert len(index) == 4 and index.stats().deleted == 2 and index.stats().segments == 2
    assert "t2" not in {h.id for h in index.search("violin", k=5)}
    assert index.search("trumpet", k=1)[0].text == "A trumpet is a brass instrument."

    before = [[(h.id, h.score) for h in index.search(q, k=4)] for q in ("sunlight", "instrument", "power")]
    index.compact()
    stats = index.stats()
    assert (stats.documents, stats.deleted, stats.segments) == (4, 0, 1)
    assert len(list((path / "segments").iterdir())) == 1
    index = LateIndex.open(path, encoder=word_encoder())
    assert [[(h.id, h.score) for h in index.search(q, k=4)] for q in ("sunlight", "instrument", "power")] == before
    index.add(["A harp has many strings."], ids=["t9"])  # keys keep growing after compaction
    assert index.search("harp", k=1)[0].id == "t9"


def test_delete_everything_then_compact(encoder):
    index = LateIndex.in_memory(encoder=encoder)
    index.add(TEXTS[:2], ids=["a", "b"])
    index.delete(["a", "b"])
    assert len(index.search("sunlight", k=3)) == 0
    index.compact()
    assert index.stats().segments == 0
    index.add(TEXTS[2:3], ids=["a"])  # an id can come back after its deletion
    assert index.search("violin", k=1)[0].id == "a"


def test_generated_ids_and_precomputed_dense(encoder):
    index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=3, dense_dim=2))
    ids = index.add(tokens=[np.eye(3)[:1], np.eye(3)[1:]], dense=np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert len(ids) == 2 and len(set(ids)) == 2 and all(isinstance(i, str) for i in ids)
    hits = index.search(index.encoder.query(np.eye(3)[2:], dense=np.array([0.0, 1.0])), k=1)
    assert hits[0].id == ids[1] and hits[0].text == ""


def test_large_shortlist_uses_ivf_and_stays_faithful():
    tokens, queries = clustered_corpus(3000, 32, seed=9)
    index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=32))
    index._store.state.shortlist.ivf_above = 1000  # exercise the IVF path at test size
    index.add(ids=[f"d{i}" for i in range(3000)], tokens=tokens)
    assert index.stats().shortlist == "ivf"
    recall = []
    for q in queries:
        want = {h.id for h in index.search(query_of(q), k=10, exhaustive=True)}
        got = {h.id for h in index.search(query_of(q), k=10, n_shortlist=600, n_prefilter=100)}
        recall.append(len(want & got) / 10)
    assert np.mean(recall) >= 0.9


def test_progress_bar_on_long_runs(encoder, capsys):
    index = LateIndex.in_memory(encoder=encoder)
    index.add([f"passage number {i}" for i in range(300)], show_progress=True)
    assert "encoding" in capsys.readouterr().err
    assert len(index) == 300


def test_stats_and_repr(tmp_path, encoder):
    index = LateIndex.create(tmp_path / "idx", encoder=encoder)
    index.add(TEXTS)
    stats = index.stats()
    assert stats.documents == 5 and stats.tokens == sum(len(t.split()) for t in TEXTS)
    assert stats.bytes_on_disk > 0 and stats.encoder["name"] == "hashed-words"
    assert "5 documents" in repr(index)


def test_empty_adds_are_no_ops(encoder):
    index = LateIndex.in_memory(encoder=encoder)
    assert index.add([]) == [] and index.add(tokens=[]) == [] and len(index) == 0


def test_distinct_metadata_values(encoder):
    index = LateIndex.in_memory(encoder=encoder)
    index.add(TEXTS, metadatas=META)
    assert index.distinct("topic") == {("energy",), ("music",), ("biology",)}
    assert index.distinct("topic", filter={"topic": {"$ne": "music"}}) == {("energy",), ("biology",)}
    with pytest.raises(Exception, match="metadata keys"):
        index.distinct()


def test_upsert_without_metadatas_keeps_each_passages_own(tmp_path, encoder):
    index = LateIndex.create(tmp_path / "idx", encoder=encoder)
    index.add(TEXTS[:2], ids=["a", "b"], metadatas=META[:2])
    index.upsert(["Solar cells turn light into current.", "A new passage."], ids=["a", "new"])
    got = {r["id"]: r for r in index.get(["a", "b", "new"])}
    assert got["a"]["metadata"] == {"topic": "energy"} and got["a"]["text"].startswith("Solar cells")
    assert got["new"]["metadata"] == {} and got["b"]["metadata"] == {"topic": "energy"}
    assert sorted(index.ids(filter={"topic": "energy"})) == ["a", "b"]
    index.upsert(["Solar again."], ids=["a"], metadatas=[{"topic": "solar"}])  # given: replaced
    assert index.get(["a"])[0]["metadata"] == {"topic": "solar"}


def test_open_or_create_runs_twice(tmp_path, encoder):
    for _ in range(2):  # a notebook cell run twice
        index = LateIndex.open_or_create(tmp_path / "idx", encoder=encoder)
        index.upsert(TEXTS[:2], ids=["a", "b"], metadatas=META[:2])
        assert len(index) == 2 and index.search("violin", k=1) is not None
        index.close()
    with pytest.raises(EncoderMismatchError):
        LateIndex.open_or_create(tmp_path / "idx", encoder=word_encoder(dim=32))
