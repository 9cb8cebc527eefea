"""Hostile input: every case gets a colcade error that says what to do, and the index stays as it was.

The fixed list is what an attack on the landed code broke; hypothesis then throws generated
texts, ids, metadata, filters and vectors at an index.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sharing_worker import encoder, passages, vectors

from colcade import (
    CorruptIndexError,
    FilterError,
    IndexClosedError,
    InvalidInputError,
    LateIndex,
    PrecomputedEncoder,
)
from colcade.encoders import EncodedQuery, pool

HERE = Path(__file__).resolve().parent


@pytest.fixture
def index(tmp_path) -> LateIndex:
    index = LateIndex.create(tmp_path / "idx", encoder=encoder())
    index.add(**passages(["a", "b", "c"], 0, 1))
    return index


def unchanged(index: LateIndex) -> bool:
    reopened = LateIndex.open(index.path, encoder=encoder())
    return reopened.ids() == ["a", "b", "c"] and len(index) == 3


# ---------------------------------------------------------------------------- damaged files
def test_zero_byte_database_is_corruption_not_an_empty_index(index):
    index.close()
    (index.path / "docs.sqlite").write_bytes(b"")
    for extra in ("docs.sqlite-wal", "docs.sqlite-shm"):
        (index.path / extra).unlink(missing_ok=True)
    segments = sorted(p.name for p in (index.path / "segments").iterdir())
    with pytest.raises(CorruptIndexError, match=r"docs\.sqlite is empty"):
        LateIndex.open(index.path, encoder=encoder())
    assert sorted(p.name for p in (index.path / "segments").iterdir()) == segments


def _segment(index: LateIndex) -> Path:
    return next((index.path / "segments").iterdir())


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda seg: (seg / "offsets.npy").write_bytes(b""), "offsets.npy"),
        (lambda seg: np.save(seg / "tokens.npy", np.asfortranarray(np.load(seg / "tokens.npy"))), "Fortran"),
        (
            lambda seg: np.save(seg / "tokens.npy", np.load(seg / "tokens.npy").astype(np.float32)),
            "tokens.npy is float32",
        ),
        (lambda seg: np.save(seg / "keys.npy", np.load(seg / "keys.npy")[::-1].copy()), "not strictly ascending"),
        (lambda seg: np.save(seg / "offsets.npy", np.load(seg / "offsets.npy")[::-1].copy()), "offsets.npy"),
        (lambda seg: np.save(seg / "dense.npy", np.load(seg / "dense.npy")[:, :3].copy()), "dense.npy"),
    ],
)
def test_damaged_segment_is_reported_at_open_naming_the_file(index, damage, message):
    # 16 tokens a passage at least would make a Fortran-order copy differ; 3x8 is enough here.
    index.close()
    damage(_segment(index))
    with pytest.raises(CorruptIndexError, match=message) as info:
        LateIndex.open(index.path, encoder=encoder())
    assert str(index.path) in str(info.value) and "rebuild" in str(info.value)


# ---------------------------------------------------------------------------- values
def test_tokens_beyond_float16_range_are_refused(index):
    huge = vectors("h", 0) * 1e6
    with pytest.raises(InvalidInputError, match="float16"):
        index.add(ids=["h"], tokens=[huge])
    assert unchanged(index)
    ok = vectors("h", 0) * 6e4  # within range: stored, and scores stay finite
    index.add(ids=["h"], tokens=[ok], metadatas=[{"v": 0, "group": 1}], texts=["h v0"])
    hits = index.search(EncodedQuery(dense=pool(vectors("a", 0)), tokens=vectors("a", 0)), k=4)
    assert len(hits) == 4 and all(np.isfinite(h.score) for h in hits)


@pytest.mark.parametrize("field", ["texts", "ids", "metadatas", "metadata_key"])
def test_lone_surrogates_are_invalid_input(index, field):
    bad = "bad \ud800 text"
    args = passages(["s"], 0, 1)
    if field == "texts":
        args["texts"] = [bad]
    elif field == "ids":
        args["ids"] = [bad]
    elif field == "metadatas":
        args["metadatas"] = [{"v": 0, "group": 1, "title": bad}]
    else:
        args["metadatas"] = [{"v": 0, "group": 1, bad: 1}]
    with pytest.raises(InvalidInputError, match="Unicode"):
        index.add(**args)
    assert unchanged(index)


def test_surrogates_in_queries_and_filters(index):
    text_index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=4, query_fn=lambda t: np.ones((1, 4))))
    with pytest.raises(InvalidInputError, match="Unicode"):
        text_index.search("what \udc80")
    with pytest.raises(FilterError, match="Unicode"):
        index.ids({"title": "x\ud800"})
    with pytest.raises(FilterError, match="Unicode"):
        index.ids({"ti\ud800tle": 1})


@pytest.mark.parametrize(
    "call",
    [
        lambda ix: ix.delete(None),
        lambda ix: ix.delete("abc"),
        lambda ix: ix.get("abc"),
        lambda ix: ix.get(None),
        lambda ix: ix.delete([None]),
        lambda ix: ix.add(**{**passages(["m"], 0, 1), "metadatas": {"v": 0}}),
    ],
)
def test_wrong_argument_shapes_are_invalid_input(index, call):
    with pytest.raises(InvalidInputError):
        call(index)
    assert unchanged(index)


def test_every_call_after_close_is_index_closed_error(index):
    index.close()
    q = EncodedQuery(dense=pool(vectors("a", 0)), tokens=vectors("a", 0))
    for call in (
        lambda: index.search(q),
        lambda: len(index),
        lambda: index.ids(),
        lambda: index.get(["a"]),
        lambda: index.add(**passages(["z"], 0, 1)),
        lambda: index.delete(["a"]),
        lambda: index.compact(),
        lambda: index.stats(),
        lambda: index.refresh(),
    ):
        with pytest.raises(IndexClosedError, match="open it again"):
            call()
    index.close()  # twice is fine


# ---------------------------------------------------------------------------- filters
@pytest.mark.parametrize("depth", [100, 1000])
def test_deep_filters_are_filter_errors(index, depth):
    flt: dict = {"group": 1}
    for i in range(depth):
        flt = {"$not": flt} if i % 2 else {"$and": [flt]}
    with pytest.raises(FilterError, match="nests deeper"):
        index.ids(flt)


def test_an_or_of_thousands_of_branches_works(index):
    flt = {"$or": [{"v": i} for i in range(2000)] + [{"group": 1}]}
    assert index.ids(flt) == ["a", "b", "c"]
    assert index.ids({"$or": [{"v": i} for i in range(1, 2001)]}) == []
    assert index.ids({"v": {"$in": list(range(-50_000, 1))}}) == ["a", "b", "c"]  # one bound list


@pytest.mark.parametrize(
    "bad",
    [
        {"v": {"$gt": 2**64}},
        {"v": {"$lt": -(2**70)}},
        {"v": float("nan")},
        {"v": {"$gte": float("inf")}},
        {"v": {"$gt": True}},
        {"v": {"$exists": "yes"}},
        {"v": {}},
        {"v": [1, 2]},
        {"$or": []},
        {"$nor": [{"v": 1}]},
        {'we"ird': 1},
    ],
)
def test_unusable_filters_are_filter_errors(index, bad):
    with pytest.raises(FilterError):
        index.ids(bad)


def test_filter_values_are_typed_and_keys_may_hold_escapes():
    index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=4))
    metas = [{"flag": True}, {"flag": 1}, {"flag": "1"}, {"flag": None}, {}, {"a\\b": 1, "c\nd": 2, "e\tf": 3}]
    index.add(ids=[f"m{i}" for i in range(6)], metadatas=metas, tokens=[np.ones((1, 4))] * 6)
    assert index.ids({"flag": True}) == ["m0"]
    assert index.ids({"flag": 1}) == ["m1"]
    assert index.ids({"flag": "1"}) == ["m2"]
    assert index.ids({"flag": {"$in": [1, "1"]}}) == ["m1", "m2"]
    assert index.ids({"flag": {"$exists": True}}) == ["m0", "m1", "m2", "m3"]  # a JSON null is present
    assert index.ids({"flag": None}) == ["m3", "m4", "m5"]
    assert index.ids({"a\\b": 1}) == index.ids({"c\nd": 2}) == index.ids({"e\tf": 3}) == ["m5"]
    assert index.distinct("a\\b") == {(None,), (1,)}


# ---------------------------------------------------------------------------- a full disk
_FULL_DISK = """
import json, resource, signal, sys
sys.path.insert(0, {here!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
from colcade import LateIndex, StorageError
from sharing_worker import encoder, passages
index = LateIndex.open({path!r}, encoder=encoder())
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
args = passages(["big-%d" % i for i in range({n})], 0, 1)
args["texts"] = [t + " " + "x" * {text} for t in args["texts"]]
try:
    index.add(**args)
    print(json.dumps({{"raised": None}}))
except StorageError as exc:
    print(json.dumps({{"raised": "StorageError", "message": str(exc), "ids": index.ids()}}))
"""


@pytest.mark.parametrize("what, n, text", [("segment files", 20_000, 0), ("database", 3, 400_000)])
def test_a_full_disk_is_a_storage_error_and_the_index_is_unchanged(index, what, n, text):
    # RLIMIT_FSIZE makes the kernel refuse writes past a size, as a full disk refuses them.
    limit = 200_000
    script = _FULL_DISK.format(here=str(HERE), path=str(index.path), limit=limit, n=n, text=text)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["raised"] == "StorageError", f"a write past the limit ({what}) was not refused: {result}"
    assert "nothing was committed" in result["message"].lower() and result["ids"] == ["a", "b", "c"]
    assert unchanged(index)
    assert not [p for p in (index.path / "staging").iterdir() if p.is_dir()], "staging left behind"
    index.add(**passages(["after"], 0, 1))  # with room again, writes work
    assert len(index) == 4


# ---------------------------------------------------------------------------- generated input
MISSING = object()
KEYS = ["a", "b", "c\\d", "e\nf"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([-1.5, 0.0, 2.5]),
    st.sampled_from(["", "x", "y", "1", "é"]),
)
values = st.one_of(scalars, st.lists(st.integers(0, 2), max_size=2))
metadata = st.dictionaries(st.sampled_from(KEYS), values, max_size=4)
query_scalars = st.one_of(
    st.booleans(), st.integers(-3, 3), st.sampled_from([-1.5, 0.0, 2.5]), st.sampled_from(["", "x", "y", "1"])
)


def conditions():
    ops = st.one_of(
        st.tuples(st.sampled_from(["$eq", "$ne"]), st.one_of(st.none(), query_scalars)),
        st.tuples(
            st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
            st.one_of(st.integers(-3, 3), st.sampled_from([-1.5, 2.5, "", "x", "y"])),
        ),
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(query_scalars, min_size=1, max_size=3)),
        st.tuples(st.just("$exists"), st.booleans()),
    )
    return st.one_of(query_scalars, st.none(), st.lists(ops, min_size=1, max_size=2).map(dict))


filters_ = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), conditions(), min_size=1, max_size=2),
    lambda inner: st.one_of(
        st.builds(lambda fs: {"$and": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda fs: {"$or": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda f: {"$not": f}, inner),
    ),
    max_leaves=6,
)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _equal(stored, wanted) -> bool:
    if isinstance(wanted, bool) or isinstance(stored, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    if isinstance(wanted, str):
        return isinstance(stored, str) and stored == wanted
    return _number(stored) and stored == wanted


def _field(meta: dict, key: str, cond) -> bool:
    v = meta.get(key, MISSING)
    cond = cond if isinstance(cond, dict) else {"$eq": cond}
    for op, x in cond.items():
        if op in ("$eq", "$ne"):
            same = (v is MISSING or v is None) if x is None else _equal(v, x)
            ok = same if op == "$eq" else not same
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            comparable = (_number(v) and _number(x)) or (isinstance(v, str) and isinstance(x, str))
            ok = (
                comparable and {"$gt": v > x, "$gte": v >= x, "$lt": v < x, "$lte": v <= x}[op] if comparable else False
            )
        elif op in ("$in", "$nin"):
            inside = any(_equal(v, y) for y in x)
            ok = inside if op == "$in" else not inside
        else:
            ok = (v is not MISSING) == x
        if not ok:
            return False
    return True


def matches(meta: dict, flt: dict) -> bool:
    """The documented filter semantics, in plain Python."""
    for key, value in flt.items():
        if key == "$and":
            ok = all(matches(meta, f) for f in value)
        elif key == "$or":
            ok = any(matches(meta, f) for f in value)
        elif key == "$not":
            ok = not matches(meta, value)
        else:
            ok = _field(meta, key, value)
        if not ok:
            return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metas=st.lists(metadata, min_size=1, max_size=12), flt=filters_)
def test_generated_filters_select_what_their_meaning_selects(metas, flt):
    index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=4))
    index.add(ids=[f"d{i}" for i in range(len(metas))], metadatas=metas, tokens=[np.ones((1, 4))] * len(metas))
    want = [f"d{i}" for i, m in enumerate(metas) if matches(m, flt)]
    assert index.ids(flt) == want
    q = EncodedQuery(dense=np.ones(4, np.float32), tokens=np.ones((1, 4), np.float32))
    assert sorted(h.id for h in index.search(q, k=20, filter=flt)) == sorted(want)


any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=30)


def _valid_unicode(s: str) -> bool:
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(any_text, min_size=1, max_size=4),
    ids=st.lists(any_text, min_size=1, max_size=4),
    meta=st.dictionaries(any_text, st.one_of(scalars, any_text), max_size=3),
)
def test_generated_texts_ids_and_metadata_round_trip_or_are_refused(texts, ids, meta):
    n = min(len(texts), len(ids))
    texts, ids = texts[:n], ids[:n]
    index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=4))
    strings = texts + ids + list(meta) + [v for v in meta.values() if isinstance(v, str)]
    meta_strings = list(meta) + [v for v in meta.values() if isinstance(v, str)]
    fine = all(_valid_unicode(s) for s in strings) and all(ids) and len(set(ids)) == n
    fine = fine and not any("\0" in s for s in meta_strings)  # SQLite's JSON stops at NUL: refused
    try:
        index.add(texts, ids=ids, metadatas=[meta] * n, tokens=[np.ones((1, 4))] * n)
    except InvalidInputError:
        assert not fine
        assert index.ids() == []
        return
    assert fine
    assert index.get(ids) == [{"id": i, "text": t, "metadata": meta} for i, t in zip(ids, texts)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=8, max_size=8))
def test_generated_vectors_are_stored_faithfully_or_refused(values):
    index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=4))
    tokens = np.array(values, np.float32).reshape(2, 4)
    try:
        index.add(ids=["v"], tokens=[tokens])
    except InvalidInputError:
        assert not np.isfinite(tokens).all() or np.abs(tokens).max() > 65504
        return
    q = np.ones((1, 4), np.float32)
    hit = index.search(EncodedQuery(dense=np.ones(4, np.float32), tokens=q), k=1)[0]
    assert np.isfinite(hit.score)
    assert hit.score == pytest.approx(
        float((q @ tokens.astype(np.float16).astype(np.float32).T).max()), rel=1e-3, abs=1e-3
    )


# ---------------------------------------------------------------------------- found by attacking it
def test_nul_characters_and_non_string_keys_in_metadata_are_refused(index):
    for meta in (
        {"v": 0, "group": 1, "src": "a\x00b"},
        {"v": 0, "group": 1, "a\x00": 1},
        {"v": 0, "group": 1, 1: "x"},
        {"v": 0, "group": 1, "nested": [{"k": "x\x00"}]},
    ):
        with pytest.raises(InvalidInputError, match="NUL|must be strings"):
            index.add(**{**passages(["n"], 0, 1), "metadatas": [meta]})
    with pytest.raises(FilterError, match="NUL"):
        index.ids({"src": "a\x00b"})
    assert unchanged(index)


@pytest.mark.parametrize("bad", [float("nan"), -1, None, "5", True])
def test_lock_timeout_is_validated(index, bad):
    with pytest.raises(InvalidInputError, match="lock_timeout"):
        LateIndex.open(index.path, encoder=encoder(), lock_timeout=bad)


def test_an_infinite_lock_timeout_waits_as_long_as_it_takes(index):
    patient = LateIndex.open(index.path, encoder=encoder(), lock_timeout=float("inf"))
    patient.add(**passages(["d"], 0, 1))
    assert len(patient) == 4
