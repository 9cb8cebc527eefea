"""Bad input gets a specific error that says what to do; a failed write changes nothing."""

import json
import sqlite3

import numpy as np
import pytest
from conftest import query_of, word_encoder

from colcade import (
    CorruptIndexError,
    DuplicateIdError,
    FilterError,
    IndexExistsError,
    IndexNotFoundError,
    InvalidInputError,
    LateIndex,
    PrecomputedEncoder,
    StorageError,
    UnknownIdError,
)


@pytest.fixture
def index(tmp_path):
    index = LateIndex.create(tmp_path / "idx", encoder=word_encoder(dim=8))
    index.add(["alpha beta", "gamma delta"], ids=["a", "b"], metadatas=[{"x": 1}, {"x": 2}])
    return index


def unchanged(index):
    return len(index) == 2 and {h.id for h in index.search("alpha gamma", k=5)} == {"a", "b"}


@pytest.mark.parametrize("texts", [[""], ["   \n"], ["ok", ""]])
def test_empty_text(index, texts):
    with pytest.raises(InvalidInputError, match="empty"):
        index.add(texts)
    assert unchanged(index)


def test_text_must_be_a_list_of_strings(index):
    with pytest.raises(InvalidInputError, match="wrap it"):
        index.add("one string")
    with pytest.raises(InvalidInputError, match="must be a string"):
        index.add([b"bytes"])


def test_wrong_dimension(index):
    with pytest.raises(InvalidInputError, match=r"\[tokens, 8\]"):
        index.add(tokens=[np.ones((3, 9))])
    with pytest.raises(InvalidInputError, match=r"\(1, 8\)"):
        index.add(tokens=[np.ones((3, 8))], dense=np.ones((1, 5)))
    with pytest.raises(InvalidInputError, match=r"\[tokens, 8\]"):
        index.search(query_of(np.ones((2, 4), np.float32)))
    assert unchanged(index)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf(index, bad):
    good, broken = np.ones((2, 8)), np.ones((2, 8))
    broken[1, 3] = bad
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        index.add(ids=["c", "d"], tokens=[good, broken])
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        index.search(query_of(broken.astype(np.float32)))
    assert unchanged(index)  # the good passage of the failed call was not added either


def test_token_matrix_with_no_rows(index):
    with pytest.raises(InvalidInputError, match="no token vectors"):
        index.add(tokens=[np.zeros((0, 8))])


def test_duplicate_ids_in_one_call(index):
    with pytest.raises(DuplicateIdError, match="'c'"):
        index.add(["one", "two"], ids=["c", "c"])
    assert unchanged(index)


def test_add_of_an_existing_id_points_to_upsert(index):
    with pytest.raises(DuplicateIdError, match="upsert"):
        index.add(["again"], ids=["a"])
    assert index.get(["a"])[0]["text"] == "alpha beta"


def test_mismatched_lengths(index):
    with pytest.raises(InvalidInputError, match="2 ids for 1"):
        index.add(["x"], ids=["p", "q"])
    with pytest.raises(InvalidInputError, match="metadatas"):
        index.add(["x"], metadatas=[{}, {}])
    with pytest.raises(InvalidInputError, match="1 texts but 2"):
        index.add(["x"], tokens=[np.ones((1, 8))] * 2)
    with pytest.raises(InvalidInputError, match="give texts"):
        index.add()


def test_metadata_that_is_not_json(index, tmp_path):
    with pytest.raises(InvalidInputError, match="JSON"):
        index.add(["x y"], ids=["c"], metadatas=[{"when": object()}])
    assert unchanged(index)
    assert len(list((index.path / "segments").iterdir())) == 1  # nothing written for it


def test_unknown_ids_on_delete_delete_nothing(index):
    with pytest.raises(UnknownIdError, match="'zzz'") as err:
        index.delete(["a", "zzz"])
    assert "nothing was deleted" in str(err.value)
    assert unchanged(index)
    with pytest.raises(UnknownIdError):
        index.get(["nope"])


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3"])
def test_bad_k(index, k):
    with pytest.raises(InvalidInputError, match="k must be a positive integer"):
        index.search("alpha", k=k)


def test_bad_stage_widths(index):
    with pytest.raises(InvalidInputError, match="n_shortlist"):
        index.search("alpha", n_shortlist=0)
    with pytest.raises(InvalidInputError, match="n_prefilter"):
        index.search("alpha", n_prefilter=-5)


@pytest.mark.parametrize("query", ["", "   ", None, 42])
def test_bad_query(index, query):
    with pytest.raises(InvalidInputError, match="query"):
        index.search(query)


@pytest.mark.parametrize(
    "flt, message",
    [
        ({"x": {"$regex": "a"}}, "unknown filter operator '\\$regex'"),
        ({"$nor": [{"x": 1}]}, "unknown filter operator '\\$nor'"),
        ({"x": {"$in": []}}, "non-empty list"),
        ({"x": {"$gt": [1]}}, "compares with"),
        ({"$or": {"x": 1}}, "list of filters"),
        ("x=1", "must be a dict"),
    ],
)
def test_bad_filters(index, flt, message):
    with pytest.raises(FilterError, match=message):
        index.search("alpha", filter=flt)


def test_missing_index(tmp_path):
    with pytest.raises(IndexNotFoundError, match="LateIndex.create"):
        LateIndex.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexNotFoundError, match="manifest.json is missing"):
        LateIndex.open(tmp_path / "empty")


def test_create_over_existing(index):
    with pytest.raises(IndexExistsError, match="LateIndex.open"):
        LateIndex.create(index.path, encoder=word_encoder(dim=8))


def test_corrupt_manifest(index):
    (index.path / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptIndexError, match="manifest.json"):
        LateIndex.open(index.path, encoder=word_encoder(dim=8))


def test_corrupt_segment_file(index):
    segment = next((index.path / "segments").iterdir())
    (segment / "tokens.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CorruptIndexError, match="tokens.npy"):
        LateIndex.open(index.path, encoder=word_encoder(dim=8))


def test_segment_that_disagrees_with_itself(index):
    segment = next((index.path / "segments").iterdir())
    np.save(segment / "offsets.npy", np.array([0, 5, 1], np.int64))
    with pytest.raises(CorruptIndexError, match="offsets"):
        LateIndex.open(index.path, encoder=word_encoder(dim=8))


def test_missing_segment_folder(index):
    for f in next((index.path / "segments").iterdir()).iterdir():
        f.unlink()
    with pytest.raises(CorruptIndexError, match="is missing"):
        LateIndex.open(index.path, encoder=word_encoder(dim=8))


def test_corrupt_database(index):
    index.close()
    (index.path / "docs.sqlite").write_bytes(b"this is not a database" * 100)
    for extra in ("docs.sqlite-wal", "docs.sqlite-shm"):
        (index.path / extra).unlink(missing_ok=True)
    with pytest.raises(CorruptIndexError, match="docs.sqlite"):
        LateIndex.open(index.path, encoder=word_encoder(dim=8))


def test_crash_between_segment_write_and_commit_loses_nothing(index, monkeypatch):
    # The segment reaches the disk, then the commit fails (as if the process died there).
    def fail(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    real_db = index._store._wdb

    class FailingCommit:
        def __getattr__(self, name):
            return getattr(real_db, name)

        def execute(self, sql, *args):
            if sql == "COMMIT":
                fail()
            return real_db.execute(sql, *args)

    index._store._wdb = FailingCommit()
    with pytest.raises(StorageError, match="nothing was committed"):
        index.add(["epsilon"], ids=["c"])
    index._store._wdb = real_db
    assert not list((index.path / "staging").glob("*/")), "the failed write left its staging folder"
    assert unchanged(index)
    reopened = LateIndex.open(index.path, encoder=word_encoder(dim=8))
    assert unchanged(reopened)


def test_orphan_segment_from_a_crash_is_ignored_then_cleaned(index):
    # A segment folder that never got committed (the process died before the commit).
    orphan = index.path / "segments" / "seg-orphan"
    orphan.mkdir()
    (orphan / "tokens.npy").write_bytes(b"partial")
    reopened = LateIndex.open(index.path, encoder=word_encoder(dim=8))
    assert unchanged(reopened)
    reopened.compact()
    assert not orphan.exists()


def test_precomputed_encoder_without_a_model_explains(index):
    vectors_only = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=8))
    with pytest.raises(InvalidInputError, match="query_fn"):
        vectors_only.search("text")
    with pytest.raises(InvalidInputError, match="document_fn"):
        vectors_only.add(["text"])


def test_no_pickle_in_the_format(index):
    manifest = json.loads((index.path / "manifest.json").read_text())
    assert manifest["format"] == "colcade-index"
    for f in (index.path / "segments").rglob("*.npy"):
        np.load(f, allow_pickle=False)  # raises if any array needed pickle
