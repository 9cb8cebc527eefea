"""Ingest of large and changing files: bounded batches, one commit per file, resumable."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import _word_vector, word_encoder

from colcade import LateIndex, PrecomputedEncoder
from colcade.app.ingest import ingest


class Interrupt(BaseException):
    """Stands in for Ctrl-C or a kill (a BaseException, as KeyboardInterrupt is)."""


def counting_encoder(calls: list[int], fail_after: int | None = None) -> PrecomputedEncoder:
    """The hashed-words encoder, counting the passages it encodes (and failing after some)."""

    def embed(text: str) -> np.ndarray:
        return np.stack([_word_vector(w, 16) for w in text.split()] or [_word_vector(text, 16)])

    def documents(texts):
        if fail_after is not None and sum(calls) >= fail_after:
            raise Interrupt()
        calls.append(len(texts))
        return [embed(t) for t in texts]

    return PrecomputedEncoder(dim=16, name="hashed-words", query_fn=embed, document_fn=documents)


def long_file(path, n_paragraphs: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(500)]
    path.write_text("\n\n".join(" ".join(rng.choice(words, 20)) + "." for _ in range(n_paragraphs)))


def test_an_interrupted_file_resumes_where_it_stopped_and_old_passages_stay_until_then(tmp_path):
    doc = tmp_path / "docs" / "big.txt"
    doc.parent.mkdir()
    long_file(doc, 100)
    calls: list[int] = []
    index = LateIndex.create(tmp_path / "idx", encoder=counting_encoder(calls))
    ingest(index, [doc.parent], max_tokens=20, overlap=0)
    old = set(index.ids())
    long_file(doc, 900, seed=1)  # the file changes and grows to 900 passages

    index._encoder = counting_encoder(calls := [], fail_after=300)  # dies inside the third checkpoint of 128 passages
    with pytest.raises(Interrupt):
        ingest(index, [doc.parent], max_tokens=20, overlap=0)
    assert set(LateIndex.open(index.path, encoder=counting_encoder([])).ids()) == old  # old passages intact

    index._encoder = counting_encoder(calls := [])
    report = ingest(index, [doc.parent], max_tokens=20, overlap=0)
    assert report.updated == [str(doc.resolve())] and report.passages == 900
    assert sum(calls) == 900 - 256, "the checkpointed first batch should not be encoded again"
    new_text = doc.read_text()
    assert len(index) == 900 and all(r["text"] in new_text for r in index.get(index.ids()))
    assert not [p for p in (index.path / "staging").iterdir() if p.is_dir()]


def test_a_changed_file_is_replaced_in_one_commit(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    long_file(docs / "a.txt", 40)
    long_file(docs / "b.txt", 10, seed=2)
    index = LateIndex.create(tmp_path / "idx", encoder=counting_encoder([]))
    ingest(index, [docs], max_tokens=20, overlap=0)
    before = index._store.refresh().generation
    long_file(docs / "a.txt", 30, seed=3)
    ingest(index, [docs], max_tokens=20, overlap=0)
    assert index._store.refresh().generation == before + 1  # old out and new in: one commit
    assert len(index.ids({"source": str((docs / "a.txt").resolve())})) == 30
    (docs / "b.txt").unlink()
    ingest(index, [docs], max_tokens=20, overlap=0)
    assert index.ids({"source": str((docs / "b.txt").resolve())}) == []


def test_a_long_add_streams_to_disk_in_batches(tmp_path):
    # 3,000 passages become one segment, written batch by batch, committed once.
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=8), storage="float16")
    rng = np.random.default_rng(0)
    tokens = [rng.standard_normal((int(rng.integers(1, 20)), 8)).astype(np.float32) for _ in range(3000)]
    index.add(ids=[f"p{i}" for i in range(3000)], tokens=tokens)
    stats = index.stats()
    assert stats.segments == 1 and stats.documents == 3000 and stats.tokens == sum(len(t) for t in tokens)
    seg = next((index.path / "segments").iterdir())
    stored = np.load(seg / "tokens.npy", mmap_mode="r")
    assert np.array_equal(stored[: len(tokens[0])], tokens[0].astype(np.float16))
    assert np.array_equal(stored[-len(tokens[-1]) :], tokens[-1].astype(np.float16))


def test_a_checkpoint_resumes_only_the_same_passages(tmp_path):
    # Resuming a checkpoint with other passages used to pair the staged vectors with the new
    # ids and texts; now the digest of what was staged must match, else it starts over.
    first = [f"alpha beta passage {i}" for i in range(300)]
    other = [f"gamma delta passage {i}" for i in range(300)]
    ids = [f"p{i}" for i in range(300)]
    index = LateIndex.create(tmp_path / "idx", encoder=counting_encoder([], fail_after=200))
    with pytest.raises(Interrupt):
        index.replace({"f": 1}, first, ids=ids, metadatas=[{"f": 1}] * 300, checkpoint="ck")
    index._encoder = counting_encoder(calls := [])
    index.replace({"f": 1}, other, ids=ids, metadatas=[{"f": 1}] * 300, checkpoint="ck")
    assert sum(calls) == 300, "staged vectors of other texts were reused"
    for i in (0, 150, 299):
        hit = index.search(other[i], k=1)[0]
        assert hit.id == ids[i] and hit.text == other[i]
    calls.clear()
    index._encoder = counting_encoder(calls, fail_after=200)
    with pytest.raises(Interrupt):
        index.replace({"f": 1}, first, ids=ids, metadatas=[{"f": 1}] * 300, checkpoint="ck2")
    index._encoder = counting_encoder(calls := [])
    index.replace({"f": 1}, first, ids=ids, metadatas=[{"f": 1}] * 300, checkpoint="ck2")
    assert sum(calls) == 300 - 256  # the same passages: the two checkpointed batches are reused


def test_an_index_that_outgrew_its_first_files_is_refitted_to_one_codec(tmp_path):
    """A small first file stays float16; once the folder brings enough tokens, ingest compacts
    the index into one compressed segment with a codec fitted to all of it."""
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(3000)]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The violin has four strings and a bow. " * 20)
    (docs / "b.txt").write_text(
        "\n\n".join(" ".join(rng.choice(vocab, 60)) + "." for _ in range(600))  # ~36k words
    )
    index = LateIndex.create(tmp_path / "idx", encoder=word_encoder())
    report = ingest(index, [docs], show_progress=False)
    assert not report.failed
    stats = index.stats()
    assert stats.extra["storage"] == "compressed" and stats.extra["codecs"] == 1 and not stats.extra["refit_due"]
    assert stats.segments == 1 and all(s.codec is not None for s in index._store.state.segments)
    assert index.search("violin strings bow", k=1)[0].metadata["file"] == "a.txt"
