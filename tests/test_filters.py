"""Metadata filters select exactly what their Python meaning selects."""

import numpy as np
import pytest
from conftest import query_of

from colcade import LateIndex, PrecomputedEncoder

ROWS = [
    {"source": "a.pdf", "page": 1, "lang": "en", "draft": False},
    {"source": "a.pdf", "page": 7, "lang": "de"},
    {"source": "b.pdf", "page": 3, "lang": "en", "draft": True},
    {"source": "c.md", "page": 12.5},
    {"source": 'it\'s "quoted"', "page": 2, "lang": "fr"},
    {},
]

CASES = [
    ({"source": "a.pdf"}, lambda m: m.get("source") == "a.pdf"),
    ({"page": {"$gte": 3}}, lambda m: "page" in m and m["page"] >= 3),
    ({"page": {"$gt": 3, "$lt": 12}}, lambda m: "page" in m and 3 < m["page"] < 12),
    ({"page": {"$lte": 2}}, lambda m: "page" in m and m["page"] <= 2),
    ({"lang": {"$ne": "en"}}, lambda m: m.get("lang") != "en"),
    ({"lang": {"$in": ["en", "fr"]}}, lambda m: m.get("lang") in ("en", "fr")),
    ({"lang": {"$nin": ["en"]}}, lambda m: m.get("lang") != "en"),
    ({"lang": {"$exists": False}}, lambda m: "lang" not in m),
    ({"draft": True}, lambda m: m.get("draft") is True),
    ({"lang": None}, lambda m: m.get("lang") is None),
    ({"$or": [{"source": "c.md"}, {"lang": "de"}]}, lambda m: m.get("source") == "c.md" or m.get("lang") == "de"),
    (
        {"$and": [{"source": "a.pdf"}, {"page": {"$gt": 1}}]},
        lambda m: m.get("source") == "a.pdf" and m.get("page", 0) > 1,
    ),
    ({"$not": {"source": "a.pdf"}}, lambda m: m.get("source") != "a.pdf"),
    ({"source": 'it\'s "quoted"'}, lambda m: m.get("source") == 'it\'s "quoted"'),
]


@pytest.fixture(scope="module")
def index():
    index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=4))
    rng = np.random.default_rng(0)
    index.add(
        ids=[f"r{i}" for i in range(len(ROWS))], tokens=[rng.standard_normal((3, 4)) for _ in ROWS], metadatas=ROWS
    )
    return index


@pytest.mark.parametrize("flt, meaning", CASES, ids=[str(c[0]) for c in CASES])
def test_filter_semantics(index, flt, meaning):
    got = {h.id for h in index.search(query_of(np.ones((1, 4), np.float32)), k=10, filter=flt)}
    assert got == {f"r{i}" for i, m in enumerate(ROWS) if meaning(m)}


def test_list_text_and_emptiness_operators():
    from colcade import FilterError

    index = LateIndex.in_memory(PrecomputedEncoder(dim=4))
    metas = [
        {"tags": ["a", "b"], "t": "Hello World"},
        {"tags": ["b", 1, True]},
        {"tags": []},
        {"t": ""},
        {"tags": None, "t": "[]"},
        {"tags": "a", "n": 0},
    ]
    index.add(ids=[f"d{i}" for i in range(6)], metadatas=metas, tokens=[np.ones((1, 4))] * 6)

    def ids(f):
        return sorted(index.ids(filter=f))

    assert ids({"tags": {"$contains": "a"}}) == ["d0"]  # a list holding "a"; the string "a" is no list
    assert ids({"tags": {"$contains": 1}}) == ["d1"] and ids({"tags": {"$contains": True}}) == ["d1"]
    assert ids({"tags": {"$contains": "1"}}) == []  # typed, as $eq
    assert ids({"tags": {"$any": ["a", 1]}}) == ["d0", "d1"]
    assert ids({"tags": {"$all": ["a", "b"]}}) == ["d0"]
    assert ids({"t": {"$text": "World"}}) == ["d0"] and ids({"t": {"$text": "world"}}) == []
    assert ids({"t": {"$itext": "world"}}) == ["d0"]
    assert ids({"tags": {"$empty": True}}) == ["d2", "d3", "d4"]  # [], missing, null
    assert ids({"t": {"$empty": True}}) == ["d1", "d2", "d3", "d5"]  # "" and missing; "[]" is a string
    assert ids({"n": {"$empty": True}}) == ["d0", "d1", "d2", "d3", "d4"]  # 0 is a value
    assert ids({"$not": {"tags": {"$contains": "b"}}}) == ["d2", "d3", "d4", "d5"]
    for bad in ({"tags": {"$any": []}}, {"tags": {"$all": "a"}}, {"t": {"$text": ""}}, {"t": {"$empty": 1}}):
        with pytest.raises(FilterError):
            index.ids(filter=bad)
