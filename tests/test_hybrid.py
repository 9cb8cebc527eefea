"""The lexical index (SQLite FTS5 kept by triggers) and hybrid search (issue 10)."""

import sqlite3

import numpy as np
import pytest

from colcade import EncodedQuery, LateIndex, PrecomputedEncoder
from colcade.encoders import pool
from colcade.engine import fusion
from colcade.errors import InvalidInputError

TEXTS = {
    "violin": "The violin is a bowed string instrument with four strings tuned in fifths.",
    "glacier": "Glaciers are slow rivers of ice that carve valleys over thousands of years.",
    "solar": "Solar panels convert sunlight into electricity with photovoltaic cells.",
    "beer": "The zymurgy of lambic beer relies on wild yeast from the Senne valley.",
    "silicon": "Photovoltaic cells are mostly made of crystalline silicon wafers.",
}


def vectors(seed: int, n: int = 6, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def lexical_ids(index: LateIndex, words: list[str]) -> set[str]:
    with index._store.reading() as (state, db):
        keys, _ = index._store.lexical(db, words, 1000)
        rows = index._store.rows(db, keys.tolist())
    return {rows[k][0] for k in keys.tolist()}


@pytest.fixture
def index(tmp_path):
    idx = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=16))
    ids = list(TEXTS)
    idx.add([TEXTS[i] for i in ids], ids=ids, tokens=[vectors(n) for n in range(len(ids))])
    yield idx
    idx.close()


def test_the_lexical_index_follows_every_write_and_survives_reopening(index, tmp_path):
    assert lexical_ids(index, ["photovoltaic"]) == {"solar", "silicon"}
    index.delete(["silicon"])
    assert lexical_ids(index, ["photovoltaic"]) == {"solar"}
    index.upsert(["Wind turbines, not photovoltaic cells."], ids=["solar"], tokens=[vectors(9)])
    assert lexical_ids(index, ["sunlight"]) == set() and lexical_ids(index, ["turbines"]) == {"solar"}
    index.compact()  # drops tombstoned rows: their lexical entries went when they died
    assert lexical_ids(index, ["photovoltaic"]) == {"solar"}
    index.close()
    with LateIndex.open(tmp_path / "idx") as again:
        assert lexical_ids(again, ["zymurgy", "ice"]) == {"beer", "glacier"}


def test_an_index_made_before_the_lexical_index_gets_one_on_open(index, tmp_path):
    index.delete(["beer"])
    index.close()
    db = sqlite3.connect(tmp_path / "idx" / "docs.sqlite")
    for name in ("lexical_add", "lexical_tombstone", "lexical_drop"):
        db.execute(f"DROP TRIGGER {name}")
    db.execute("DROP TABLE lexical")
    db.commit()
    db.close()
    with LateIndex.open(tmp_path / "idx") as reopened:
        assert lexical_ids(reopened, ["zymurgy", "violin"]) == {"violin"}  # live passages only


def test_lexical_candidates_reach_the_rerank_when_the_dense_shortlist_misses_them(index):
    beer = vectors(3)
    query = EncodedQuery(dense=-pool(beer), tokens=beer[:2])  # the pooled vector points away from it
    without = [h.id for h in index.search(query, k=5, n_shortlist=1, n_prefilter=1)]
    with_lexical = index.search(query, k=5, n_shortlist=1, n_prefilter=1, n_lexical=10, text="zymurgy")
    assert "beer" not in without
    assert with_lexical[0].id == "beer"
    assert with_lexical.stats[0].name == "lexical" and with_lexical.stats[0].candidates_out == 1


def test_fusion_modes_rank_as_documented(index):
    q = vectors(0)  # the violin passage's own tokens: MaxSim ranks it first
    query = EncodedQuery(dense=pool(q), tokens=q)
    maxsim = [h.id for h in index.search(query, k=5)]
    assert maxsim[0] == "violin"
    assert [h.id for h in index.search(query, k=5, hybrid=0.0, text="photovoltaic cells")] == maxsim
    bm25 = index.search(query, k=5, hybrid=1.0, text="photovoltaic cells")
    assert {h.id for h in bm25[:2]} == {"solar", "silicon"} and bm25[0].score == pytest.approx(1.0)
    fused = index.search(query, k=5, hybrid=True, text="photovoltaic cells")
    assert all(0.0 <= h.score <= 1.0 for h in fused) and [s.name for s in fused.stats][-1] == "fusion"
    rrf = index.search(query, k=5, hybrid="rrf", text="photovoltaic cells")
    assert rrf[0].score <= 2 / (fusion.RRF_K + 1) + 1e-6
    scores = [h.score for h in rrf]
    assert scores == sorted(scores, reverse=True)


def test_text_queries_match_their_own_words(tmp_path):
    index = LateIndex.in_memory()
    index.add(list(TEXTS.values()), ids=list(TEXTS))
    hits = index.search("zymurgy", k=2, hybrid=True)
    assert hits[0].id == "beer" and hits[0].text == TEXTS["beer"]


@pytest.mark.parametrize("hybrid", ["bm25", 1.5, -0.1, ""])
def test_bad_hybrid_arguments_are_clear_errors(index, hybrid):
    with pytest.raises(InvalidInputError, match="hybrid must be"):
        index.search(EncodedQuery(dense=pool(vectors(0)), tokens=vectors(0)), hybrid=hybrid, text="violin")


def test_encoded_queries_need_their_words_for_lexical_candidates(index):
    with pytest.raises(InvalidInputError, match="text="):
        index.search(EncodedQuery(dense=pool(vectors(0)), tokens=vectors(0)), hybrid=True)
    with pytest.raises(InvalidInputError, match="n_lexical"):
        index.search(EncodedQuery(dense=pool(vectors(0)), tokens=vectors(0)), n_lexical=-1, text="x")


def test_a_filter_applies_before_the_lexical_limit(tmp_path):
    index = LateIndex.create(tmp_path / "f", encoder=PrecomputedEncoder(dim=16))
    n = 60
    texts = ["apple apple apple orchard"] * n + ["an apple in the other group"]
    metas = [{"g": "a"}] * n + [{"g": "b"}]
    index.add(texts, ids=[f"p{i}" for i in range(n + 1)], metadatas=metas, tokens=[vectors(i) for i in range(n + 1)])
    q = vectors(999)
    hits = index.search(EncodedQuery(dense=pool(q), tokens=q), k=1, filter={"g": "b"}, hybrid=1.0, text="apple")
    assert hits[0].id == f"p{n}" and hits.stats[0].candidates_out == 1 and hits[0].score == pytest.approx(1.0)


def test_a_weak_lexical_match_still_ranks_above_passages_without_the_word(index):
    q = vectors(99)
    hits = index.search(EncodedQuery(dense=pool(q), tokens=q), k=5, hybrid=1.0, text="photovoltaic silicon wafers")
    ranked = [h.id for h in hits]
    assert set(ranked[:2]) == {"silicon", "solar"}  # both match; every other passage scores 0
    assert hits[1].score > 0 and all(h.score == 0 for h in hits[2:])


def test_rrf_scores_normalize_to_one_for_a_passage_first_in_both_rankings(index):
    q = vectors(3)  # the beer passage's own tokens, and its rare word
    hits = index.search(EncodedQuery(dense=pool(q), tokens=q), k=2, hybrid="rrf", text="zymurgy")
    assert hits[0].id == "beer" and hits[0].normalized_score == pytest.approx(1.0)


def test_search_batch_gives_each_query_its_own_words(index):
    qs = [EncodedQuery(dense=pool(vectors(99)), tokens=vectors(99))] * 2
    hits = index.search_batch(qs, k=1, hybrid=np.float32(1.0), texts=["zymurgy", "glaciers"], n_threads=2)
    assert [h[0].id for h in hits] == ["beer", "glacier"]
    with pytest.raises(InvalidInputError, match="one text a query"):
        index.search_batch(qs, k=1, hybrid=True, texts=["zymurgy"])


def test_hybrid_without_lexical_candidates_is_refused(index):
    with pytest.raises(InvalidInputError, match="at least 1"):
        index.search(EncodedQuery(dense=pool(vectors(0)), tokens=vectors(0)), hybrid=True, n_lexical=0, text="x")
    with pytest.raises(InvalidInputError, match="must be a string"):
        index.search(EncodedQuery(dense=pool(vectors(0)), tokens=vectors(0)), hybrid=True, text=123)


def test_text_queries_are_hybrid_by_default_and_vectors_alone_are_not():
    index = LateIndex.in_memory()
    index.add(list(TEXTS.values()), ids=list(TEXTS))
    stages = [s.name for s in index.search("zymurgy", k=2).stats]
    assert stages[0] == "lexical" and stages[-1] == "fusion"
    assert [s.name for s in index.search("zymurgy", k=2, hybrid=False).stats] == ["shortlist", "prefilter", "rerank"]
    assert "fusion" not in [s.name for s in index.search("zymurgy", k=2, exhaustive=True).stats]
    encoded = index.encoder.encode_query("zymurgy")
    assert "lexical" not in [s.name for s in index.search(encoded, k=2).stats]
    assert [s.name for s in index.search(encoded, k=2, text="zymurgy").stats][-1] == "fusion"


def test_an_empty_text_query_gets_the_query_message_and_ties_go_to_maxsim(index):
    with pytest.raises(InvalidInputError, match="non-empty string"):
        index.search("   ")
    beer = vectors(3)
    hits = index.search(EncodedQuery(dense=pool(beer), tokens=beer), k=5, hybrid=1.0, text="violin")
    rest = hits[1:]  # no lexical match: all 0, ordered by MaxSim (the beer passage's own tokens first)
    assert hits[0].id == "violin" and rest[0].id == "beer" and all(h.score == 0 for h in rest)
