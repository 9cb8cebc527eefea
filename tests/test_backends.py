"""One behavioural suite for every index backend: a LateIndex (in memory, in a folder) and a
QdrantIndex (local mode in memory, in a folder). Each must keep the same contract: what goes in
comes back, bad input is refused with the same errors, filters select the same passages, and
search returns exhaustive MaxSim's ranking with each hit's id, text, metadata and score together."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import clustered_corpus, exhaustive_maxsim, query_of, word_encoder

from colcade import (
    DuplicateIdError,
    FilterError,
    InvalidInputError,
    LateIndex,
    PrecomputedEncoder,
    UnknownIdError,
)

pytest.importorskip("qdrant_client")
from colcade.qdrant import QdrantIndex  # noqa: E402

BACKENDS = ["late-memory", "late-folder", "qdrant-memory", "qdrant-folder"]


@pytest.fixture(params=BACKENDS)
def make(request, tmp_path) -> Callable[..., Any]:
    """``make(encoder)``: a new, empty index of the parametrized backend."""
    opened: list[Any] = []

    def _make(encoder: Any) -> Any:
        kind = request.param
        if kind == "late-memory":
            index = LateIndex.in_memory(encoder, storage="float16")  # exact scores, as Qdrant's
        elif kind == "late-folder":
            index = LateIndex.create(tmp_path / "index", encoder, storage="float16")
        elif kind == "qdrant-memory":
            index = QdrantIndex.create(":memory:", "passages", encoder)
        else:
            index = QdrantIndex.create(str(tmp_path / "qdrant"), "passages", encoder)
        opened.append(index)
        return index

    yield _make
    for index in opened:
        index.close()


def _half_precision(tokens: list[np.ndarray]) -> list[np.ndarray]:
    """Vectors float16 holds exactly, so every backend stores the very vectors given."""
    return [t.astype(np.float16).astype(np.float32) for t in tokens]


def test_what_goes_in_comes_back(make, encoder):
    index = make(encoder)
    assert index.add(["red apple", "blue sky"], ids=["a", "b"], metadatas=[{"n": 1}, {"n": 2}]) == ["a", "b"]
    assert len(index) == 2
    assert index.get(["b", "a"]) == [
        {"id": "b", "text": "blue sky", "metadata": {"n": 2}},
        {"id": "a", "text": "red apple", "metadata": {"n": 1}},
    ]
    assert index.ids() == ["a", "b"]
    assert index.ids({"n": 2}) == ["b"]
    assert index.distinct("n") == {(1,), (2,)}
    assert index.stats().documents == 2


def test_add_refuses_existing_ids_and_writes_nothing(make, encoder):
    index = make(encoder)
    index.add(["one"], ids=["x"])
    with pytest.raises(DuplicateIdError, match="already in"):
        index.add(["two", "three"], ids=["y", "x"])
    assert index.ids() == ["x"]
    with pytest.raises(DuplicateIdError, match="repeat"):
        index.add(["a", "b"], ids=["z", "z"])


def test_upsert_replaces_and_keeps_metadata_unless_given(make, encoder):
    index = make(encoder)
    index.add(["old text"], ids=["p"], metadatas=[{"source": "a.pdf"}])
    index.upsert(["new text"], ids=["p"])
    assert index.get(["p"]) == [{"id": "p", "text": "new text", "metadata": {"source": "a.pdf"}}]
    index.upsert(["newer"], ids=["p"], metadatas=[{"source": "b.pdf"}])
    assert index.get(["p"])[0]["metadata"] == {"source": "b.pdf"}
    assert len(index) == 1
    hits = index.search("newer", k=1, hybrid=False)
    assert [(h.id, h.text) for h in hits] == [("p", "newer")]
    with pytest.raises(InvalidInputError, match="upsert needs ids"):
        index.upsert(["x"])


def test_delete_unknown_ids_deletes_nothing(make, encoder):
    index = make(encoder)
    index.add(["a", "b", "c"], ids=["a", "b", "c"])
    with pytest.raises(UnknownIdError, match="1 ids"):
        index.delete(["a", "nope"])
    assert len(index) == 3
    assert index.delete(["a", "nope"], missing_ok=True) == 1
    assert index.ids() == ["b", "c"]
    with pytest.raises(UnknownIdError):
        index.get(["a"])
    assert index.get(["a", "b"], missing_ok=True) == [{"id": "b", "text": "b", "metadata": {}}]
    assert "a" not in [h.id for h in index.search("a", k=3, hybrid=False)]


@pytest.mark.parametrize("exhaustive", [False, True])
def test_search_equals_exhaustive_maxsim(make, exhaustive):
    tokens, queries = clustered_corpus(300, 32, seed=3)
    tokens = _half_precision(tokens)
    index = make(PrecomputedEncoder(dim=32))
    ids = [f"p{i}" for i in range(len(tokens))]
    index.add([f"text {i}" for i in ids], ids=ids, metadatas=[{"i": i} for i in range(len(ids))], tokens=tokens)
    for q in queries[:8]:
        exact = exhaustive_maxsim(q, tokens)
        hits = index.search(query_of(q), k=10, exhaustive=exhaustive)
        best = np.argsort(-exact, kind="stable")[:10]
        assert [h.id for h in hits] == [ids[i] for i in best]
        for h in hits:  # a hit's id, text, metadata and score belong to one passage
            i = int(h.id[1:])
            assert h.text == f"text {h.id}" and h.metadata == {"i": i}
            assert h.score == pytest.approx(float(exact[i]), rel=1e-4, abs=1e-4)
            assert h.normalized_score == pytest.approx(h.score / len(q), rel=1e-6)


FILTER_CASES: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({"source": "a.pdf"}, lambda m: m.get("source") == "a.pdf"),
    ({"source": {"$ne": "a.pdf"}}, lambda m: m.get("source") != "a.pdf"),
    ({"page": {"$gte": 3}}, lambda m: m.get("page", -1) >= 3),
    ({"page": {"$lt": 2}}, lambda m: "page" in m and m["page"] < 2),
    ({"page": 2.0}, lambda m: m.get("page") == 2),
    ({"source": {"$in": ["b.pdf", "c.pdf"]}}, lambda m: m.get("source") in ("b.pdf", "c.pdf")),
    ({"source": {"$nin": ["b.pdf", "c.pdf"]}}, lambda m: m.get("source") not in ("b.pdf", "c.pdf")),
    ({"page": {"$in": [1, 4]}}, lambda m: m.get("page") in (1, 4)),
    ({"tags": {"$contains": "x"}}, lambda m: "x" in m.get("tags", [])),
    ({"tags": {"$any": ["y", "z"]}}, lambda m: bool({"y", "z"} & set(m.get("tags", [])))),
    ({"tags": {"$all": ["x", "y"]}}, lambda m: {"x", "y"} <= set(m.get("tags", []))),
    ({"draft": True}, lambda m: m.get("draft") is True),
    ({"note": {"$exists": True}}, lambda m: "note" in m),
    ({"note": {"$exists": False}}, lambda m: "note" not in m),
    ({"note": None}, lambda m: m.get("note") is None),
    ({"note": {"$empty": True}}, lambda m: m.get("note") in (None, "")),
    (
        {"$or": [{"source": "a.pdf"}, {"page": {"$gt": 4}}]},
        lambda m: m.get("source") == "a.pdf" or m.get("page", 0) > 4,
    ),
    (
        {"$and": [{"source": "b.pdf"}, {"draft": False}]},
        lambda m: m.get("source") == "b.pdf" and m.get("draft") is False,
    ),
    ({"$not": {"source": "a.pdf"}}, lambda m: m.get("source") != "a.pdf"),
]


def _metadata(i: int) -> dict[str, Any]:
    m: dict[str, Any] = {"source": "abc"[i % 3] + ".pdf", "page": i % 6, "draft": i % 4 == 0}
    m["tags"] = [t for t, on in (("x", i % 2 == 0), ("y", i % 3 == 0), ("z", i % 5 == 0)) if on]
    if i % 7 == 0:
        m["note"] = "" if i % 14 == 0 else "see also"
    elif i % 11 == 0:
        m["note"] = None
    return m


@pytest.mark.parametrize("flt,keep", FILTER_CASES, ids=[str(f) for f, _ in FILTER_CASES])
def test_filters_select_the_same_passages(make, flt, keep):
    tokens, queries = clustered_corpus(60, 16, seed=5)
    index = make(PrecomputedEncoder(dim=16))
    metas = [_metadata(i) for i in range(60)]
    index.add(ids=[str(i) for i in range(60)], metadatas=metas, tokens=tokens)
    expected = {str(i) for i, m in enumerate(metas) if keep(m)}
    assert expected and len(expected) < 60  # each case splits the corpus
    assert set(index.ids(flt)) == expected
    hits = index.search(query_of(queries[0]), k=60, filter=flt)
    assert {h.id for h in hits} == expected


def test_bad_input_is_refused_alike(make):
    index = make(PrecomputedEncoder(dim=8))
    index.add(ids=["a"], tokens=[np.ones((2, 8), np.float32)])
    with pytest.raises(InvalidInputError, match="token vectors"):
        index.add(ids=["b"], tokens=[np.ones((2, 7), np.float32)])
    with pytest.raises(InvalidInputError, match="float16"):
        index.add(ids=["b"], tokens=[np.full((2, 8), 1e6, np.float32)])
    with pytest.raises(InvalidInputError, match="k must be"):
        index.search(query_of(np.ones((1, 8), np.float32)), k=0)
    with pytest.raises(InvalidInputError, match="query"):
        index.search("   ")
    with pytest.raises(InvalidInputError, match="query token vectors"):
        index.search(query_of(np.ones((1, 5), np.float32)))
    with pytest.raises(FilterError, match="unknown filter operator"):
        index.search(query_of(np.ones((1, 8), np.float32)), filter={"a": {"$near": 1}})
    with pytest.raises(InvalidInputError, match="list of ids"):
        index.delete("a")
    with pytest.raises(InvalidInputError, match="metadata"):
        index.add(ids=["c"], metadatas=[{"bad": object()}], tokens=[np.ones((1, 8), np.float32)])
    assert index.ids() == ["a"]


def test_text_search_uses_the_encoder(make):
    index = make(word_encoder(32))
    index.add(["the cat sat", "a dog barked", "stock prices fell"], ids=["cat", "dog", "stock"])
    assert index.search("dog barked", k=1, hybrid=False)[0].id == "dog"
    batch = index.search_batch(["cat", "prices"], k=1, hybrid=False)
    assert [hits[0].id for hits in batch] == ["cat", "stock"]
