"""Compressed storage: the residual codec, its kernels, and indexes that store codes by default."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from colcade import EncodedQuery, LateIndex, PrecomputedEncoder
from colcade.engine import codec as codec_module
from colcade.engine import kernels
from colcade.engine.codec import ResidualCodec, centroid_count
from colcade.errors import CorruptIndexError, InvalidInputError


def clustered(n: int, d: int, seed: int = 0, centres: int = 64) -> np.ndarray:
    """Unit vectors around a few centres: the shape of real token vectors, unlike i.i.d. noise."""
    c = np.random.default_rng(100).standard_normal((centres, d)).astype(np.float32)  # one topic set for all
    rng = np.random.default_rng(seed)
    v = c[rng.integers(0, centres, n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def passages(n: int, d: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 40, n)
    v = clustered(int(lengths.sum()), d, seed)
    return np.split(v, np.cumsum(lengths)[:-1])


def small_trees(mp: pytest.MonkeyPatch) -> None:
    """Two-level codebooks past 64 centroids and at 4 tokens a leaf: a few thousand tokens get
    one, where the defaults ask for millions."""
    mp.setattr(codec_module, "FLAT_CENTROIDS", 64)
    mp.setattr(codec_module, "TOKENS_A_LEAF", 4)


@pytest.fixture(scope="module", params=["rotated", "uniform", "tree"])
def codec(request) -> ResidualCodec:
    """The default coding (rotated, 1.75 bits a dimension), the one before it (2 bits in every
    dimension), which indexes written earlier hold, and the default with a two-level codebook."""
    if request.param == "rotated":
        return ResidualCodec.train(clustered(6000, 64))
    if request.param == "tree":
        with pytest.MonkeyPatch.context() as mp:
            small_trees(mp)
            tree = ResidualCodec.train(clustered(6000, 64))
        assert tree.coarse is not None and tree.coarse.shape == (32, 64) and tree.k == 1024
        return tree
    return ResidualCodec.train(clustered(6000, 64), nbits=2, rotate=False)


def test_centroid_count_follows_plaid_and_is_capped() -> None:
    assert centroid_count(1) == 1
    assert centroid_count(10_000) == 1024  # 2^floor(log2(16 * 100))
    assert centroid_count(2_000_000) == 4096  # PLAID asks 16,384, but leaves would be ~122 tokens each
    assert centroid_count(6_000_000) == 16384
    assert centroid_count(10**9) == 65536  # codes are uint16


def test_a_two_level_codebook_codes_each_token_to_the_best_leaf_of_its_best_coarse_centroid() -> None:
    with pytest.MonkeyPatch.context() as mp:
        small_trees(mp)
        tree = ResidualCodec.train(clustered(6000, 64))
        mp.setattr(codec_module, "TOKENS_A_LEAF", 10**9)  # the same sample, a flat codebook of 64
        flat = ResidualCodec.train(clustered(6000, 64))
    assert tree.coarse is not None and flat.coarse is None and flat.k == 64
    v = clustered(3000, 64, seed=5)
    codes = tree.assign(v)
    m = tree.k // len(tree.coarse)
    group = np.argmax(v @ tree.coarse.T, axis=1)
    np.testing.assert_array_equal(codes // m, group)
    best = [g * m + np.argmax(tree.centroids[g * m : (g + 1) * m] @ x) for x, g in zip(v, group)]
    np.testing.assert_array_equal(codes, best)
    # Finer centroids leave smaller residuals (what the leaves are for).
    err = [np.mean(np.sum((v - c.centroids[c.assign(v)]) ** 2, axis=1)) for c in (tree, flat)]
    assert err[0] < 0.8 * err[1]


def test_a_codebook_split_unevenly_is_refused() -> None:
    c = np.eye(6, 4, dtype=np.float32)
    with pytest.raises(InvalidInputError, match="evenly"):
        ResidualCodec(c, np.zeros((4, 3)), np.zeros((4, 4)), 2, 6, coarse=np.eye(4, dtype=np.float32))


def test_codec_reconstructs_closely_and_packs_its_bits(codec: ResidualCodec) -> None:
    v = clustered(2000, 64, seed=1)
    codes, packed = codec.encode(v)
    width = 14 if codec.rotation is not None else 16  # 64 dims x 1.75 bits on average, or x 2 bits
    assert codes.dtype == np.uint16 and packed.shape == (2000, width) and codec.nbytes == width
    assert int(codes.max()) < codec.k
    decoded = codec.decode(codes, packed)
    cos = np.sum(decoded * v, axis=1) / np.linalg.norm(decoded, axis=1)
    assert np.median(cos) > 0.95
    # Decoded vectors code back to themselves: compaction re-encodes without drifting.
    again = codec.encode(decoded.astype(np.float32))
    assert np.mean(again[0] == codes) > 0.95 and np.mean(again[1] == packed) > 0.95


def test_a_codec_of_unit_vectors_decodes_unit_vectors_and_others_as_coded() -> None:
    v = clustered(3000, 64, seed=5)
    unit = ResidualCodec.train(v)
    assert unit.unit
    decoded = unit.decode(*unit.encode(v))
    # Unit in the rotated axes the kernel scores in; the float16 rotation back moves lengths by ~1e-5.
    np.testing.assert_allclose(np.linalg.norm(decoded, axis=1), 1.0, rtol=2e-4)
    scaled = v * np.linspace(0.5, 2.0, len(v), dtype=np.float32)[:, None]
    free = ResidualCodec.train(scaled)
    assert not free.unit
    lengths = np.linalg.norm(free.decode(*free.encode(scaled)), axis=1)
    assert np.corrcoef(lengths, np.linalg.norm(scaled, axis=1))[0, 1] > 0.9  # lengths kept, not forced to 1
    with pytest.raises(InvalidInputError, match="unit-length"):  # scores would change silently otherwise
        unit.encode(scaled)
    # Codecs saved before the flag existed (not unit, not rotated) keep the name their segments give.
    free, unit = ResidualCodec.train(scaled, nbits=2, rotate=False), ResidualCodec.train(v, nbits=2, rotate=False)
    old = ResidualCodec(free.centroids, free.cutoffs, free.weights, free.nbits, free.trained_on)
    assert (
        old.name == free.name
        and unit.name != ResidualCodec(unit.centroids, unit.cutoffs, unit.weights, unit.nbits, unit.trained_on).name
    )


def test_rotation_puts_the_bits_where_the_variance_is() -> None:
    """Token vectors whose spread differs by direction (real ones span ~100x): rotated and given
    bits by variance, 2 bits a dimension reconstruct better than 2 bits in every dimension; at
    1.5 bits the high-variance blocks get the widest codes."""
    rng = np.random.default_rng(8)
    mix = np.linalg.qr(rng.standard_normal((64, 64)))[0].astype(np.float32)  # spread along no axis
    v = clustered(8000, 64, seed=2) + (rng.standard_normal((8000, 64)) * np.geomspace(0.6, 0.006, 64)) @ mix
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    train, test = v[:6000], v[6000:]

    def error(c: ResidualCodec) -> float:
        return float(np.mean(np.sum((c.decode(*c.encode(test)) - test) ** 2, axis=1)))

    uniform = ResidualCodec.train(train, nbits=2, rotate=False)
    rotated, fewer = ResidualCodec.train(train, nbits=2), ResidualCodec.train(train, nbits=1.5)
    assert rotated.nbytes == uniform.nbytes == 16 and fewer.nbytes == 12
    assert error(rotated) < 0.8 * error(uniform)
    blocks = fewer.widths.reshape(-1, 16)[:, 0]
    assert blocks[0] == blocks.max() and blocks[-1] == blocks.min() < blocks.max()


@pytest.mark.parametrize("nbits, dim", [(0, 64), (0.1, 64), (5, 64), (1.5, 100), (1.5, 32), ("2", 64), (8.5, 64)])
def test_bit_budgets_no_codec_meets_are_refused_at_create(tmp_path, nbits, dim) -> None:
    with pytest.raises(InvalidInputError, match="nbits"):
        LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=dim), nbits=nbits)


def test_codec_save_load_round_trip_and_damage(codec: ResidualCodec, tmp_path) -> None:
    folder = tmp_path / codec.name
    codec.save(folder)
    loaded = ResidualCodec.load(folder)
    assert loaded.name == codec.name and loaded.trained_on == codec.trained_on and loaded.unit == codec.unit
    np.testing.assert_array_equal(loaded.weights, codec.weights)
    np.testing.assert_array_equal(loaded.widths, codec.widths)
    v = clustered(50, 64, seed=9)
    np.testing.assert_array_equal(loaded.decode(*loaded.encode(v)), codec.decode(*codec.encode(v)))
    np.save(folder / "weights.npy", codec.weights + 1)
    with pytest.raises(CorruptIndexError, match="does not match"):
        ResidualCodec.load(folder)
    if codec.rotation is not None:  # the rotation is named by the hash too
        np.save(folder / "weights.npy", codec.weights)
        np.save(folder / "rotation.npy", -codec.rotation.astype(np.float16))
        with pytest.raises(CorruptIndexError, match="does not match"):
            ResidualCodec.load(folder)
        (folder / "steps.npy").unlink()
        with pytest.raises(CorruptIndexError, match="lacks a file"):
            ResidualCodec.load(folder)
    if codec.coarse is not None:  # the coarse centroids are named too, and needed
        shutil.rmtree(folder)
        codec.save(folder)
        np.testing.assert_array_equal(ResidualCodec.load(folder).coarse, codec.coarse)
        np.save(folder / "coarse.npy", codec.coarse[::-1].astype(np.float16))
        with pytest.raises(CorruptIndexError, match="does not match"):
            ResidualCodec.load(folder)
        (folder / "coarse.npy").unlink()
        with pytest.raises(CorruptIndexError, match="lacks a file"):
            ResidualCodec.load(folder)


def test_kernels_refuse_codes_past_the_centroids(codec: ResidualCodec) -> None:
    codes = np.array([0, codec.k], np.uint16)  # the second names no centroid
    packed = np.zeros((2, codec.nbytes), np.uint8)
    offsets, cand = np.array([0, 2], np.int64), np.array([0], np.int64)
    q = np.ones((1, 64), np.float32)
    with pytest.raises(InvalidInputError, match="past"):
        kernels.maxsim_residual(q, codec, codes, packed, offsets, cand)
    with pytest.raises(InvalidInputError, match="past"):
        kernels.maxsim_codes(np.ones((codec.k, 1), np.float32), codes, offsets, cand)


def test_numpy_backend_gives_the_same_scores(codec: ResidualCodec, monkeypatch) -> None:
    docs = passages(20, 64, seed=3)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in docs])]).astype(np.int64)
    codes, packed = codec.encode(np.concatenate(docs))
    q = clustered(5, 64, seed=4)
    fast = kernels.maxsim_residual(q, codec, codes, packed, offsets, None)
    monkeypatch.setenv("COLCADE_KERNELS", "numpy")
    np.testing.assert_allclose(kernels.maxsim_residual(q, codec, codes, packed, offsets, None), fast, atol=1e-4)


def _index(tmp_path, **kw) -> LateIndex:
    return LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=64), **kw)


N = 900  # passages of 3-40 tokens: ~19k tokens, past MIN_TRAIN, so the first write is compressed


def test_index_stores_codes_by_default_and_searches_them(tmp_path) -> None:
    docs = passages(N, 64)
    index = _index(tmp_path)
    index.add(ids=[f"p{i}" for i in range(N)], tokens=docs)
    (segment,) = (tmp_path / "idx" / "segments").iterdir()
    files = {f.name for f in segment.iterdir()}
    assert {"codes.npy", "residuals.npy", "codec.txt"} <= files and "tokens.npy" not in files
    n_tokens = sum(len(p) for p in docs)
    coded = os.path.getsize(segment / "codes.npy") + os.path.getsize(segment / "residuals.npy") - 2 * 128
    assert coded == n_tokens * (64 * 7 // 32 + 2)  # 1.75 bits a dimension plus a 2-byte centroid id
    index.close()

    index = LateIndex.open(tmp_path / "idx")
    query = EncodedQuery(dense=docs[7].mean(0), tokens=docs[7][:5])
    hits = index.search(query, k=5, exhaustive=True)
    assert hits[0].id == "p7"
    # The score is MaxSim over the decoded vectors, exactly.
    seg = index._store.state.segments[0]
    decoded = seg.passage_tokens(7)
    assert hits[0].score == pytest.approx(float((query.tokens @ decoded.T).max(1).sum()), abs=1e-3)
    # The cascade at default widths agrees with exhaustive MaxSim over the same stored vectors,
    # its centroid prefilter keeping twice the float16 width (max(200, 20k)), 200 / 0.68 for a
    # 5-token query (its rerank takes 0.68 of the time a passage).
    cascaded = index.search(query, k=5)
    assert [h.id for h in cascaded] == [h.id for h in hits]
    assert [(s.name, s.candidates_out) for s in cascaded.stats][1] == ("prefilter", 295)
    assert {s.name: s for s in index.search(query, k=5, n_prefilter=200).stats}["prefilter"].candidates_out == 200


def test_an_index_coded_before_rotation_opens_searches_and_compacts(tmp_path, monkeypatch) -> None:
    """Segments of the earlier coding (2 bits in every dimension, no rotation) keep their codec;
    a later write of over 4x the tokens fits a rotated one beside it; both rank together, and
    compaction refits one rotated codec without losing a passage."""
    train = ResidualCodec.train.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(ResidualCodec, "train", classmethod(lambda cls, *a, **kw: train(cls, *a, **kw, rotate=False)))
    index = _index(tmp_path, nbits=2)
    first = passages(N, 64, seed=11)
    index.add(ids=[f"a{i}" for i in range(N)], tokens=first)
    index.close()
    monkeypatch.undo()

    index = LateIndex.open(tmp_path / "idx")
    (old,) = index._store.state.segments
    assert old.codec is not None and old.codec.rotation is None and old.codec.nbytes == 16
    second = passages(5 * N, 64, seed=12)
    index.add(ids=[f"b{i}" for i in range(5 * N)], tokens=second)
    new = index._store.state.segments[1]
    assert new.codec is not None and new.codec.rotation is not None and new.codec.nbytes == 16  # nbits=2 kept
    for pid, docs in (("a3", first[3]), ("b40", second[40])):
        query = EncodedQuery(dense=docs.mean(0), tokens=docs[:6])
        assert index.search(query, k=1)[0].id == pid
    index.compact()
    (merged,) = index._store.state.segments
    assert merged.codec is not None and merged.codec.rotation is not None and len(index) == 6 * N
    query = EncodedQuery(dense=first[3].mean(0), tokens=first[3][:6])
    assert index.search(query, k=1)[0].id == "a3"


def test_an_index_with_a_two_level_codebook_searches_reopens_and_compacts(tmp_path, monkeypatch) -> None:
    """What a large index gets (a codebook of leaves under coarse centroids), on a small one."""
    small_trees(monkeypatch)
    docs = passages(N, 64, seed=21)
    index = _index(tmp_path)
    index.add(ids=[f"p{i}" for i in range(N)], tokens=docs)
    (seg,) = index._store.state.segments
    assert seg.codec is not None and seg.codec.coarse is not None and seg.codec.k > 64
    assert json.loads((tmp_path / "idx" / "codecs" / seg.codec.name / "codec.json").read_text())["coarse"] == len(
        seg.codec.coarse
    )
    index.close()
    monkeypatch.undo()  # reading needs nothing but the saved codec

    index = LateIndex.open(tmp_path / "idx")
    (seg,) = index._store.state.segments
    assert seg.codec is not None and seg.codec.coarse is not None
    queries = [EncodedQuery(dense=docs[i].mean(0), tokens=docs[i][:6]) for i in (4, 300, 777)]
    for i, q in zip((4, 300, 777), queries):
        exact = index.search(q, k=5, exhaustive=True)
        decoded = [seg.passage_tokens(int(h.id[1:])) for h in exact]
        want = [float((q.tokens @ d.T).max(1).sum()) for d in decoded]
        np.testing.assert_allclose([h.score for h in exact], want, atol=1e-3)
        assert exact[0].id == f"p{i}" and index.search(q, k=1, n_shortlist=20, n_cells=4)[0].id == f"p{i}"
    before = [[(h.id, h.score) for h in index.search(q, k=5, exhaustive=True)] for q in queries]
    index.delete(["p1"])
    index.compact()
    assert [[(h.id, h.score) for h in index.search(q, k=5, exhaustive=True)] for q in queries] == before
    assert index._store.state.segments[0].codec.name == seg.codec.name  # codes copied, not coded again


def test_float16_storage_is_exact_and_four_times_larger(tmp_path) -> None:
    docs = passages(N, 64)
    exact = LateIndex.create(tmp_path / "exact", encoder=PrecomputedEncoder(dim=64), storage="float16")
    small = LateIndex.create(tmp_path / "small", encoder=PrecomputedEncoder(dim=64))
    for index in (exact, small):
        index.add(ids=[f"p{i}" for i in range(N)], tokens=docs)
    q = EncodedQuery(dense=docs[3].mean(0), tokens=docs[3][:4])
    top = exact.search(q, k=1, exhaustive=True)[0]
    assert top.score == pytest.approx(float((q.tokens @ docs[3].T).max(1).sum()), abs=2e-3)

    def segments_size(index: LateIndex) -> int:
        return sum(f.stat().st_size for f in (index.path / "segments").rglob("*.npy"))

    # float16 + sign bits: 136 bytes a token at d=64; codes: 18, plus dense vectors in both
    assert segments_size(exact) > 3 * segments_size(small)
    with pytest.raises(InvalidInputError, match="storage"):
        LateIndex.create(tmp_path / "bad", encoder=PrecomputedEncoder(dim=64), storage="zip")


def test_small_indexes_stay_float16_until_a_codec_can_be_fitted(tmp_path) -> None:
    index = _index(tmp_path)
    first, second = passages(40, 64, seed=5), passages(N, 64, seed=6)
    index.add(ids=[f"s{i}" for i in range(40)], tokens=first)  # ~800 tokens: too few to fit a codec
    assert index._store.state.segments[0].codec is None
    index.add(ids=[f"l{i}" for i in range(N)], tokens=second)  # now past MIN_TRAIN
    old, new = index._store.state.segments
    assert old.codec is None and new.codec is not None and new.codec.trained_on > 16_000
    # Mixed segments rank together: a float16 passage and a compressed one both come first for their own query.
    for tokens, want in ((first[3], "s3"), (second[9], "l9")):
        q = EncodedQuery(dense=tokens.mean(0), tokens=tokens[:6])
        assert index.search(q, k=3)[0].id == want
        assert [h.id for h in index.search(q, k=10)] == [h.id for h in index.search(q, k=10, exhaustive=True)]
    index.compact()
    (segment,) = index._store.state.segments
    assert segment.codec is not None  # compaction compresses what was left float16
    q = EncodedQuery(dense=first[3].mean(0), tokens=first[3][:6])
    assert index.search(q, k=1)[0].id == "s3"
    reopened = LateIndex.open(tmp_path / "idx")
    assert reopened.search(q, k=1)[0].id == "s3"


def test_a_much_larger_write_fits_its_own_codec_and_compaction_keeps_one(tmp_path) -> None:
    index = _index(tmp_path)
    index.add(ids=[f"a{i}" for i in range(N)], tokens=passages(N, 64, seed=7))
    big = passages(4 * N + 200, 64, seed=8)  # more than 4x the tokens the first codec saw
    index.add(ids=[f"b{i}" for i in range(len(big))], tokens=big)
    assert len({s.codec.name for s in index._store.state.segments}) == 2
    q = EncodedQuery(dense=big[9].mean(0), tokens=big[9][:6])
    before = [h.id for h in index.search(q, k=10, exhaustive=True)]
    index.compact()
    (segment,) = index._store.state.segments
    assert segment.codec.trained_on > 70_000  # the codec fitted to more tokens took over
    after = [h.id for h in index.search(q, k=10, exhaustive=True)]
    assert after[0] == before[0] == "b9" and len(set(after[:5]) & set(before[:5])) >= 4


def test_indexes_from_before_compression_open_as_float16(tmp_path) -> None:
    index = LateIndex.create(tmp_path / "old", encoder=PrecomputedEncoder(dim=64), storage="float16")
    index.add(ids=["a"], tokens=passages(1, 64))
    index.close()
    manifest = tmp_path / "old" / "manifest.json"
    data = json.loads(manifest.read_text())
    del data["storage"]  # what format-1 indexes written before compression look like
    manifest.write_text(json.dumps(data))
    reopened = LateIndex.open(tmp_path / "old")
    reopened.add(ids=["b"], tokens=passages(1, 64, seed=9))
    assert all(s.codec is None for s in reopened._store.state.segments)


def test_a_missing_codec_is_a_clear_error(tmp_path) -> None:
    index = _index(tmp_path)
    index.add(ids=[f"p{i}" for i in range(N)], tokens=passages(N, 64))
    index.close()
    shutil.rmtree(next((tmp_path / "idx" / "codecs").iterdir()))
    with pytest.raises(CorruptIndexError, match="codecs"):
        LateIndex.open(tmp_path / "idx")


def test_compaction_removes_codecs_no_segment_names_once_a_day_old(tmp_path) -> None:
    index = _index(tmp_path)
    index.add(ids=[f"a{i}" for i in range(N)], tokens=passages(N, 64, seed=7))
    stray = tmp_path / "idx" / "codecs" / "codec-0000000000000000"
    stray.mkdir()
    (stray / "codec.json").write_text("{}")
    fresh = tmp_path / "idx" / "codecs" / "codec-1111111111111111"
    fresh.mkdir()
    os.utime(stray, (0, 0))  # written long ago, named by nothing
    index.compact()
    names = {p.name for p in (tmp_path / "idx" / "codecs").iterdir()}
    assert stray.name not in names and fresh.name in names  # the fresh one may belong to a write in flight
    assert index._store.state.segments[0].codec.name in names


def test_damaged_compressed_segments_are_reported_on_open(tmp_path) -> None:
    index = _index(tmp_path)
    index.add(ids=[f"p{i}" for i in range(N)], tokens=passages(N, 64))
    index.close()
    (segment,) = (tmp_path / "idx" / "segments").iterdir()
    codes = np.load(segment / "codes.npy")
    codes[5] = 65535  # past any codec's centroids
    np.save(segment / "codes.npy", codes)
    with pytest.raises(CorruptIndexError, match="codes.npy"):
        LateIndex.open(tmp_path / "idx")
    np.save(segment / "codes.npy", codes[:-3])  # shorter than the offsets and the residuals say
    with pytest.raises(CorruptIndexError, match="is damaged"):
        LateIndex.open(tmp_path / "idx")


def test_a_write_that_reuses_a_codec_marks_it_in_use(tmp_path) -> None:
    index = _index(tmp_path)
    index.add(ids=[f"a{i}" for i in range(N)], tokens=passages(N, 64, seed=7))
    (codec,) = (tmp_path / "idx" / "codecs").iterdir()
    os.utime(codec, (0, 0))  # saved long ago: unnamed, compaction would take it
    index.add(ids=["b0", "b1"], tokens=passages(2, 64, seed=8))  # reuses it (chosen outside the lock)
    assert codec.stat().st_mtime > 1e9  # so a compaction meanwhile leaves it for this write's commit


@pytest.mark.parametrize("where", ["disk", "memory"])
def test_compaction_copies_codes_under_one_codec_bit_for_bit(tmp_path, where) -> None:
    # Decoding and coding again could move a token to another centroid; copying cannot.
    first, second = passages(N, 64, seed=11), passages(N // 2, 64, seed=12)
    enc = PrecomputedEncoder(dim=64)
    index = _index(tmp_path) if where == "disk" else LateIndex.in_memory(encoder=enc)
    index.add(ids=[f"a{i}" for i in range(N)], tokens=first)
    index.add(ids=[f"b{i}" for i in range(len(second))], tokens=second)  # reuses the first write's codec
    segments = index._store.state.segments
    assert len(segments) == 2 and segments[0].codec.name == segments[1].codec.name
    index.delete([f"a{i}" for i in range(0, N, 3)])
    q = EncodedQuery(dense=second[4].mean(0), tokens=second[4][:6])
    before = [(h.id, h.score) for h in index.search(q, k=20, exhaustive=True)]
    old = {f"b{i}": segments[1].passage_tokens(i) for i in range(len(second))}
    old.update({f"a{i}": segments[0].passage_tokens(i) for i in range(N)})
    index.compact()
    (segment,) = index._store.state.segments
    assert segment.codec.name == segments[0].codec.name
    assert segment.n == N - len(range(0, N, 3)) + len(second)
    ids = [f"a{i}" for i in range(N) if i % 3] + [f"b{i}" for i in range(len(second))]
    for i in (0, 1, segment.n // 2, segment.n - 1):
        np.testing.assert_array_equal(segment.passage_tokens(i), old[ids[i]])
    assert [(h.id, h.score) for h in index.search(q, k=20, exhaustive=True)] == before


def test_a_codec_only_deleted_passages_used_does_not_force_coding_again(tmp_path) -> None:
    index = _index(tmp_path)
    index.add(ids=[f"a{i}" for i in range(N)], tokens=passages(N, 64, seed=31))
    big = passages(4 * N + 200, 64, seed=32)  # fits its own codec
    index.add(ids=[f"b{i}" for i in range(len(big))], tokens=big)
    first, second = index._store.state.segments
    assert first.codec.name != second.codec.name
    index.delete([f"a{i}" for i in range(N)])  # the first codec now codes nothing live
    before = {i: second.passage_tokens(i) for i in (0, 5, len(big) - 1)}
    index.compact()
    (segment,) = index._store.state.segments
    assert segment.codec.name == second.codec.name
    for i, vectors in before.items():
        np.testing.assert_array_equal(segment.passage_tokens(i), vectors)  # copied, not coded again


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_dense_codes_keep_inner_products_to_about_a_hundredth() -> None:
    from colcade.engine import dense_codes

    rng = np.random.default_rng(4)
    v = rng.standard_normal((500, 128)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v[3] = 0  # an all-zero vector stays zero (its step is not 0 / 0)
    rows = dense_codes.encode(v)
    assert rows.dtype == np.uint8 and rows.shape == (500, 68)  # 4 bits a dimension + the step
    back = dense_codes.decode(rows)
    q = rng.standard_normal(128).astype(np.float32)
    q /= np.linalg.norm(q)
    error = np.abs(back @ q - v @ q)
    assert error.mean() < 1e-2 and error.max() < 4e-2
    assert not back[3].any()
    # the order of inner products, which is what the shortlist needs, mostly holds
    assert np.corrcoef(back @ q, v @ q)[0, 1] > 0.98
    np.testing.assert_array_equal(dense_codes.decode(v.astype(np.float16)), v.astype(np.float16))  # old rows as is
    assert dense_codes.decode(rows[:0]).shape == (0, 128)
    huge = dense_codes.decode(dense_codes.encode(np.array([[1e20, -1e20, 3e19, 0.0]], np.float32)))
    assert np.isfinite(huge).all() and huge[0, 0] > 1e19 > -1e19 > huge[0, 1]  # its rms does not overflow
    eight = dense_codes.encode(v[:, :127])  # an odd dimension keeps 8 bits (two dims a byte would not fill it)
    assert eight.dtype == np.int8 and eight.shape == (500, 131)
    err8 = np.abs(dense_codes.decode(eight) @ q[:127] - v[:, :127] @ q[:127])
    assert err8.mean() < 1e-3 and err8.max() < 4e-3


def test_compressed_segments_store_dense_vectors_in_4_bits_and_compaction_copies_them(tmp_path) -> None:
    from colcade.engine import dense_codes

    docs = passages(N, 64, seed=41)
    dense = np.stack([p.mean(0) / np.linalg.norm(p.mean(0)) for p in docs])
    index = _index(tmp_path)
    index.add(ids=[f"p{i}" for i in range(N)], tokens=docs, dense=dense)
    (seg,) = index._store.state.segments
    assert seg.dense.dtype == np.uint8 and seg.dense.shape == (N, 36)
    assert _cosines(dense_codes.decode(seg.dense), dense).min() > 0.97
    stored = np.array(seg.dense)
    index.delete(["p0"])
    index.compact()
    (after,) = index._store.state.segments
    np.testing.assert_array_equal(after.dense, stored[1:])  # copied, never decoded and coded again
    batch = next(index.passages(batch_size=N))
    np.testing.assert_array_equal(batch.dense, dense_codes.decode(stored[1:]))


def _with_old_dense_rows(tmp_path, docs, old_rows, before=lambda index: None):
    """An index of ``docs`` whose one segment holds its dense vectors as ``old_rows(current rows)``
    (as an earlier version wrote them), reopened; with ``before(index)`` (taken before the rewrite)
    and the rows written."""
    from colcade.engine import dense_codes

    index = _index(tmp_path)
    index.add(ids=[f"p{i}" for i in range(N)], tokens=docs)
    seen = before(index)
    (seg,) = index._store.state.segments
    old = old_rows(dense_codes.decode(seg.dense))
    index.close()
    np.save(tmp_path / "idx" / "segments" / seg.name / "dense.npy", old)
    reopened = LateIndex.open(tmp_path / "idx")
    assert reopened._store.state.segments[0].dense.dtype == old.dtype
    return reopened, seen, old


def _compaction_codes_old_rows(index: LateIndex, old: np.ndarray) -> None:
    from colcade.engine import dense_codes

    index.delete(["p1"])
    index.compact()
    (after,) = index._store.state.segments
    assert after.dense.dtype == np.uint8  # compaction brings it to the current layout
    assert _cosines(dense_codes.decode(after.dense), np.delete(dense_codes.decode(old), 1, axis=0)).min() > 0.97


def test_segments_with_8_bit_dense_vectors_still_open_search_and_compact(tmp_path) -> None:
    from colcade.engine import dense_codes

    docs = passages(N, 64, seed=43)
    reopened, _, eight = _with_old_dense_rows(tmp_path, docs, dense_codes._encode8)
    q = EncodedQuery(dense=docs[9].mean(0), tokens=docs[9][:6])
    assert reopened.search(q, k=3)[0].id == "p9"
    _compaction_codes_old_rows(reopened, eight)


def test_segments_with_float16_dense_vectors_still_open_search_and_compact(tmp_path) -> None:
    docs = passages(N, 64, seed=42)
    q = EncodedQuery(dense=docs[9].mean(0), tokens=docs[9][:6])

    def search(index: LateIndex) -> list[str]:
        return [h.id for h in index.search(q, k=10, n_shortlist=50, n_prefilter=30)]

    reopened, want, old = _with_old_dense_rows(tmp_path, docs, lambda rows: rows.astype(np.float16), search)
    assert search(reopened) == want
    _compaction_codes_old_rows(reopened, old)


def test_short_queries_keep_more_passages_after_the_centroid_prefilter(tmp_path) -> None:
    docs = passages(N, 64, seed=44)
    index = _index(tmp_path)
    index.add(ids=[f"p{i}" for i in range(N)], tokens=docs)
    assert index._store.state.segments[0].codec is not None
    i = next(i for i, d in enumerate(docs) if len(d) >= 30)

    def kept(n_tokens: int) -> int:
        hits = index.search(EncodedQuery(dense=docs[i].mean(0), tokens=docs[i][:n_tokens]), k=10)
        assert hits[0].id == f"p{i}"
        return {s.name: s for s in hits.stats}["prefilter"].candidates_out

    assert kept(30) == 200
    assert kept(10) == 250  # 200 / 0.80: a 9-16-token rerank takes 0.80 of the time a passage
    assert kept(3) == 295  # 200 / 0.68


def test_dimensions_that_cannot_be_rotated_default_to_two_bits_everywhere(tmp_path) -> None:
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=40))
    docs = passages(N, 40, seed=13)
    index.add(ids=[f"p{i}" for i in range(N)], tokens=docs)
    (segment,) = index._store.state.segments
    assert segment.codec is not None and segment.codec.rotation is None and segment.codec.nbytes == 10
    query = EncodedQuery(dense=docs[5].mean(0), tokens=docs[5][:4])
    assert index.search(query, k=1)[0].id == "p5"


def test_eight_bits_code_every_dimension_unrotated_and_numpy_numbers_are_budgets(tmp_path) -> None:
    v = clustered(6000, 64)
    codec = ResidualCodec.train(v, nbits=8)
    assert codec.rotation is None and codec.nbytes == 64
    assert np.median(np.sum(codec.decode(*codec.encode(v[:500])) * v[:500], axis=1)) > 0.999
    index = LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=64), nbits=np.float32(1.5))
    docs = passages(N, 64, seed=14)
    index.add(ids=[f"p{i}" for i in range(N)], tokens=docs)
    (segment,) = index._store.state.segments
    assert segment.codec is not None and segment.codec.nbytes == 12


def test_a_larger_codebook_takes_candidates_from_more_cells(tmp_path, monkeypatch) -> None:
    """Above ``LARGE`` passages a query token's cells are a share of the index's codebook."""
    from colcade.engine import cascade

    small_trees(monkeypatch)
    docs = passages(N, 64, seed=22)
    index = _index(tmp_path)
    index.add(ids=[f"p{i}" for i in range(N)], tokens=docs)
    k = index._store.state.segments[0].codec.k
    monkeypatch.setattr(cascade, "LARGE", 100)
    monkeypatch.setattr(cascade, "CENTROIDS_A_CELL", k // 32)
    seen = []
    run = cascade.run
    monkeypatch.setattr(cascade, "run", lambda *a, **kw: seen.append(a[4]) or run(*a, **kw))
    query = EncodedQuery(dense=docs[5].mean(0), tokens=docs[5][:6])
    assert index.search(query, k=3, n_shortlist=50)[0].id == "p5"
    assert index.search(query, k=3, n_shortlist=50, n_cells=2)[0].id == "p5"
    assert [w.n_cells for w in seen] == [32, 2]  # the default from the codebook; an explicit one as asked
