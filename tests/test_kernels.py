"""The compiled kernels agree with the numpy definitions, on every code path."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colcade.engine import kernels
from colcade.errors import InvalidInputError

_c = pytest.importorskip("colcade.engine._kernels")
LEVELS = {0: "scalar", 1: "avx2", 2: "avx512"}


@pytest.fixture(params=sorted(LEVELS))
def simd(request):
    """Each SIMD level this CPU has; skipped where it does not."""
    got = _c.set_simd(request.param)
    if got != LEVELS[request.param]:
        _c.set_simd(2)
        pytest.skip(f"this CPU has no {LEVELS[request.param]}")
    yield got
    _c.set_simd(2)


def ragged(rng, n, dim, max_len=150):
    lengths = rng.integers(1, max_len, size=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = rng.standard_normal((offsets[-1], dim)).astype(np.float16)
    return tokens, offsets


@pytest.mark.parametrize("dim", [128, 96, 384, 12, 1])
@pytest.mark.parametrize("nq", [1, 5, 8, 9, 16, 17, 32, 33, 80])
def test_float_kernel_matches_reference(simd, dim, nq):
    rng = np.random.default_rng(dim * 100 + nq)
    tokens, offsets = ragged(rng, 40, dim)
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    cand = rng.permutation(40)[:30]
    got = kernels.maxsim(q, tokens, offsets, cand)
    want = kernels.maxsim_reference(q, tokens, offsets, cand)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3 * np.sqrt(dim))


@pytest.mark.parametrize("dim", [128, 96, 384, 12, 1, 250, 257])
@pytest.mark.parametrize("nq", [1, 8, 31, 32, 33, 70])
def test_hamming_kernel_matches_reference_exactly(simd, dim, nq):
    rng = np.random.default_rng(dim * 100 + nq)
    tokens, offsets = ragged(rng, 40, dim)
    bits = kernels.binarize(tokens)
    qbits = kernels.binarize(rng.standard_normal((nq, dim)))
    cand = rng.permutation(40)[:30]
    got = kernels.maxsim_hamming(qbits, bits, offsets, cand, dim)
    want = kernels.maxsim_hamming_reference(qbits, bits, offsets, cand, dim)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    dim=st.integers(1, 70),
    nq=st.integers(1, 40),
    seed=st.integers(0, 2**31),
)
def test_kernels_on_arbitrary_shapes(n, dim, nq, seed):
    rng = np.random.default_rng(seed)
    tokens, offsets = ragged(rng, n, dim, max_len=30)
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    cand = rng.integers(0, n, size=rng.integers(1, 2 * n + 1))  # repeats allowed
    np.testing.assert_allclose(
        kernels.maxsim(q, tokens, offsets, cand),
        kernels.maxsim_reference(q, tokens, offsets, cand),
        rtol=1e-4,
        atol=1e-3 * np.sqrt(dim),
    )
    bits, qbits = kernels.binarize(tokens), kernels.binarize(q)
    np.testing.assert_array_equal(
        kernels.maxsim_hamming(qbits, bits, offsets, cand, dim),
        kernels.maxsim_hamming_reference(qbits, bits, offsets, cand, dim),
    )


def test_float16_special_values_are_converted_like_numpy(simd):
    # Subnormals, zeros of both signs and large values take the scalar converter's odd branches.
    row = np.array([[6e-8, -6e-8, 0.0, -0.0, 65504.0, -1e-5, 3.14, 1e-4]], dtype=np.float16)
    offsets = np.array([0, 1])
    for j in range(8):
        q = np.zeros((1, 8), np.float32)
        q[0, j] = 1.0
        assert kernels.maxsim(q, row, offsets)[0] == np.float32(row[0, j])


def test_empty_candidate_list():
    tokens, offsets = ragged(np.random.default_rng(0), 3, 8)
    assert kernels.maxsim(np.ones((2, 8), np.float32), tokens, offsets, np.array([], np.int64)).shape == (0,)


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_out_of_range_candidate_is_an_error_not_a_crash(backend, monkeypatch):
    if backend == "numpy":
        monkeypatch.setenv("COLCADE_KERNELS", "numpy")
    tokens, offsets = ragged(np.random.default_rng(0), 3, 8)
    q, qbits, bits = np.ones((1, 8), np.float32), kernels.binarize(np.ones((1, 8))), kernels.binarize(tokens)
    with pytest.raises(InvalidInputError, match="range|lie in"):
        kernels.maxsim(q, tokens, offsets, np.array([3]))
    with pytest.raises(InvalidInputError, match="range|lie in"):
        kernels.maxsim_hamming(qbits, bits, offsets, np.array([-1]), 8)
    # Offsets past the token buffer (the public kernels once read beyond it and crashed).
    for bad in ([0, 2, len(tokens) + 1000, offsets[-1]], [0, 5, 3, offsets[-1]], [0, -4, 2, offsets[-1]]):
        bad = np.array(bad[: len(offsets)], np.int64)
        with pytest.raises(InvalidInputError, match="rows|offsets"):
            kernels.maxsim(q, tokens, bad, np.array([0, 1]))
        with pytest.raises(InvalidInputError, match="rows|offsets"):
            kernels.maxsim_hamming(qbits, bits, bad, np.array([0, 1]), 8)


def test_numpy_backend_can_be_forced(monkeypatch):
    monkeypatch.setenv("COLCADE_KERNELS", "numpy")
    assert kernels.backend() == "numpy"
    tokens, offsets = ragged(np.random.default_rng(1), 5, 16)
    q = np.ones((3, 16), np.float32)
    np.testing.assert_allclose(
        kernels.maxsim(q, tokens, offsets), kernels.maxsim_reference(q, tokens, offsets, np.arange(5)), rtol=1e-5
    )


# 132: an odd byte count; 8: no whole 16-dimension step of the AVX-512 decoder, only its tail.
# Rotated: 1.5 bits (1- and 2-bit blocks), 3 (2 and 4), 0.75 (0 and 1).
@pytest.mark.parametrize(
    "dim, nbits, rotate",
    [(384, 2, False), (132, 2, False), (128, 2, False), (8, 2, False), (64, 4, False), (24, 1, False)]
    + [(384, 1.5, True), (64, 3.0, True), (64, 0.75, True)],
)
@pytest.mark.parametrize("nq", [1, 14, 33])
@pytest.mark.parametrize("unit", [True, False])
def test_compressed_kernels_match_reference_on_every_path(simd, dim, nbits, rotate, nq, unit):
    from colcade.engine.codec import ResidualCodec

    rng = np.random.default_rng(dim + nq)
    v = rng.standard_normal((3000, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    if not unit:  # vectors of any length: decoded as coded, not rescaled
        v *= rng.uniform(0.5, 2.0, (len(v), 1)).astype(np.float32)
    codec = ResidualCodec.train(v, nbits=nbits, rotate=rotate)
    assert codec.unit == unit and (codec.rotation is not None) == rotate and codec.nbytes == dim * nbits / 8
    lengths = rng.integers(1, 60, 50)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    codes, packed = codec.encode(v[: offsets[-1]])
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    cand = rng.permutation(50)[:30].astype(np.int64)
    np.testing.assert_allclose(
        kernels.maxsim_residual(q, codec, codes, packed, offsets, cand),
        kernels.maxsim_residual_reference(q, codec, codes, packed, offsets, cand),
        rtol=1e-4,
        atol=1e-3,
    )
    table = np.ascontiguousarray(codec.centroids @ q.T)
    np.testing.assert_allclose(
        kernels.maxsim_codes(table, codes, offsets, cand),
        kernels.maxsim_codes_reference(table, codes, offsets, cand),
        rtol=1e-6,
        atol=1e-5,
    )
    # Rows padded to whole vectors (the AVX2 path where this CPU has it): the same maxes, summed alike.
    padded = kernels.pad_lanes(table)
    assert padded.shape[1] % 8 == 0 and padded.ctypes.data % 32 == 0
    np.testing.assert_array_equal(
        kernels.maxsim_codes(padded, codes, offsets, cand, nq=nq), kernels.maxsim_codes(table, codes, offsets, cand)
    )


def _cell_scores_match_reference(cells, gains, postings, n, limit, keep=None, allowed=None):
    """The kernel's (ids, scores), bit for bit the numpy definition's (token sums in the same order)."""
    from colcade.engine.kernels import cell_scores, cell_scores_reference

    ids, scores = cell_scores(cells, gains, postings.starts, postings.lists, n, limit, keep, allowed)
    want_ids, want = cell_scores_reference(cells, gains, postings.starts, postings.lists, n, limit, keep, allowed)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want)
    return ids, scores


def _random_postings(rng, n, k, most=30):
    from colcade.engine.postings import Postings

    offsets = np.concatenate([[0], np.cumsum(rng.integers(1, most, n))])
    return Postings.build(rng.integers(0, k, offsets[-1]).astype(np.uint16), offsets, k)


@pytest.mark.parametrize("seed", range(4))
def test_cell_scores_kernel_matches_reference(simd, seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 400)), int(rng.integers(1, 64))
    postings = _random_postings(rng, n, k)
    nq, c = int(rng.integers(1, 20)), int(rng.integers(1, min(k, 8) + 1))
    cells = np.stack([rng.choice(k, c, replace=False) for _ in range(nq)])
    gains = rng.random((nq, c)).astype(np.float32)  # in no order: a token's best cell counts
    gains[0, 0] = 0.0  # a cell worth nothing adds no passage
    limit = int(rng.integers(1, n + 1))
    ids, scores = _cell_scores_match_reference(cells, gains, postings, n, limit)
    got = np.zeros(n, np.float32)
    got[ids] = scores
    # The definition: per query token, the best gain of the cells holding the passage, lists over limit skipped.
    for p in rng.integers(n, size=5):
        expect = 0.0
        for row, g in zip(cells, gains):
            held = [gain for cell, gain in zip(row, g) if len(postings.passages(cell)) <= limit]
            held = [gain for cell, gain in zip(row, g) if gain in held and p in postings.passages(cell)]
            expect += max(held, default=0.0)
        assert got[p] == pytest.approx(expect, rel=1e-6)
        assert (p in ids) == (expect > 0)


@pytest.mark.parametrize("n, k, seed", [(300, 16, 0), (5_000, 64, 1), (200_000, 512, 2), (65_537, 8, 3)])
def test_cell_scores_keeps_exactly_the_best_allowed(simd, n, k, seed):
    """``keep`` and ``allowed`` against the definition: the best so many of the allowed passages,
    ties to the lower id (gains on a coarse grid make many ties), ids ascending. Above 65,536
    passages the lists come in blocks, and a kept count passed midway is cut early: the later
    blocks must then beat the weakest kept."""
    from colcade.engine.kernels import cell_scores_reference

    rng = np.random.default_rng(seed)
    postings = _random_postings(rng, n, k, most=12)
    nq, c = 12, min(k, 6)
    cells = np.stack([rng.choice(k, c, replace=False) for _ in range(nq)])
    gains = (rng.integers(0, 4, (nq, c)) / 4).astype(np.float32)
    allowed = rng.random(n) < 0.8
    for keep in (0, 1, 7, n // 10, n, n + 5):
        for mask in (None, allowed):
            ids, _ = _cell_scores_match_reference(cells, gains, postings, n, n, keep, mask)
            every, _ = _cell_scores_match_reference(cells, gains, postings, n, n, None, mask)
            assert len(ids) == min(keep, len(every))
            assert np.all(np.diff(ids) > 0)
            if mask is not None:
                assert mask[ids].all()
    # The definition itself: nothing left out scores above the weakest kept, and a tie there goes to the lower id.
    all_ids, all_scores = cell_scores_reference(cells, gains, postings.starts, postings.lists, n, n)
    ids, scores = cell_scores_reference(cells, gains, postings.starts, postings.lists, n, n, keep=n // 10)
    out = ~np.isin(all_ids, ids)
    assert all_scores[out].max() <= scores.min()
    tied = all_ids[out][all_scores[out] == scores.min()]
    assert not len(tied) or tied.min() > ids[scores == scores.min()].max()


def test_cell_scores_checks_keep_mask_and_gains():
    from colcade.engine.kernels import cell_scores
    from colcade.engine.postings import Postings

    p = Postings.from_lists(np.array([0, 2, 3]), np.array([0, 1, 1], np.int32), 2)
    with pytest.raises(InvalidInputError, match="keep"):
        cell_scores(np.array([[0]]), np.array([[1.0]]), p.starts, p.lists, 2, limit=10, keep=-1)
    with pytest.raises(InvalidInputError, match="allowed"):
        cell_scores(np.array([[0]]), np.array([[1.0]]), p.starts, p.lists, 2, limit=10, allowed=np.ones(3, bool))
    for bad in (np.nan, np.inf, -0.5):
        with pytest.raises(InvalidInputError, match="finite and at least 0"):
            cell_scores(np.array([[0]]), np.array([[bad]]), p.starts, p.lists, 2, limit=10)
    # Scores a few ulps apart (a histogram scale that would overflow in float32) still cut right.
    two = Postings.from_lists(np.array([0, 1, 2]), np.array([1, 0], np.int32), 2)
    tiny = np.array([[1e-45, 2e-45]], np.float32)
    assert cell_scores(np.array([[0, 1]]), tiny, two.starts, two.lists, 2, limit=10, keep=1)[0].tolist() == [0]
    assert cell_scores(np.array([[0, 1]]), tiny, two.starts, two.lists, 2, limit=10, keep=0)[0].tolist() == []


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_cell_scores_refuses_what_would_read_out_of_bounds(backend, monkeypatch):
    from colcade.engine.kernels import cell_scores
    from colcade.engine.postings import Postings

    if backend == "numpy":
        monkeypatch.setenv("COLCADE_KERNELS", "numpy")
    p = Postings.from_lists(np.array([0, 2, 3]), np.array([0, 1, 1], np.int32), 2)
    one = (np.array([[0]]), np.array([[1.0]]))
    with pytest.raises(InvalidInputError, match="names no list"):
        cell_scores(np.array([[2]]), np.array([[1.0]]), p.starts, p.lists, 2, limit=10)
    with pytest.raises(InvalidInputError, match="alike"):
        cell_scores(np.array([[0, 1]]), np.array([[1.0]]), p.starts, p.lists, 2, limit=10)
    # Lists cut for more passages than this segment holds: two blocks a list where it has one.
    wide = Postings.from_lists(np.array([0, 2, 3]), np.array([0, 70_000, 1], np.int32), 70_001)
    with pytest.raises(InvalidInputError, match="starts must be"):
        cell_scores(np.array([[0]]), np.array([[1.0]]), wide.starts[:-1], wide.lists, 70_001, limit=10)
    for damage in ("past the ids", "backwards", "more than a block"):
        starts = p.starts.copy()
        if damage == "past the ids":
            starts[1] = 80_001
        elif damage == "backwards":
            starts[1] = -1
        else:
            starts[1] = 70_000
        with pytest.raises(InvalidInputError, match="damaged"):
            cell_scores(*one, starts, np.zeros(80_000, np.uint16), 2, limit=10**6)


def test_cell_scores_damaged_ids_stay_inside_the_block(simd):
    """An id is an offset into its block's scores, so a damaged one (past the segment's passages)
    reads and writes inside the scratch: nothing past ``n`` comes back, and the next query is clean."""
    from colcade.engine.kernels import cell_scores
    from colcade.engine.postings import Postings

    p = Postings.from_lists(np.array([0, 2, 3]), np.array([0, 1, 1], np.int32), 2)
    bad = np.array([0, 65_535, 40_000], np.uint16)
    ids, scores = cell_scores(np.array([[0, 1]]), np.array([[1.0, 0.5]]), p.starts, bad, 2, limit=10)
    assert ids.tolist() == [0] and scores.tolist() == [1.0]
    ids, scores = cell_scores(np.array([[0, 1]]), np.array([[1.0, 0.5]]), p.starts, p.lists, 2, limit=10)
    assert ids.tolist() == [0, 1] and scores.tolist() == [1.0, 1.0]


def test_posting_lists_round_trip_in_blocks_at_two_bytes_an_id():
    from colcade.engine.postings import Postings

    rng = np.random.default_rng(3)
    for n in (1, 2, 65_535, 65_536, 65_537, 300_000):
        k = 5
        plain = [np.sort(rng.choice(n, min(n, size), replace=False)) for size in (0, 1, 7, n // 3, n)]
        starts = np.concatenate([[0], np.cumsum([len(x) for x in plain])])
        p = Postings.from_lists(starts, np.concatenate(plain).astype(np.int32), n)
        assert p.starts.shape == (k * max(1, -(-n // 65_536)) + 1,) and p.lists.dtype == np.uint16
        assert len(p) == starts[-1]
        for cell, want in enumerate(plain):
            np.testing.assert_array_equal(p.passages(cell), want)
    for starts, ids in (([0, 2], [1, 1]), ([0, 2], [3, 0]), ([0, 1], [5]), ([0, 3], [0, 1]), ([1, 2], [0, 1])):
        with pytest.raises(InvalidInputError):
            Postings.from_lists(np.array(starts), np.array(ids), 5)


def test_cell_scores_kernel_over_many_passages_matches_reference(simd):
    """Lists of 200k passages in four blocks: the kernel's result is the definition's, read to
    the end, and the scratch comes back clean (the same call again, with and without a cut)."""
    rng = np.random.default_rng(11)
    n, k = 200_003, 48
    p = _random_postings(rng, n, k, most=4)
    cells = np.stack([rng.choice(k, 4, replace=False) for _ in range(6)])
    gains = rng.random(cells.shape).astype(np.float32)
    ids, _ = _cell_scores_match_reference(cells, gains, p, n, n)
    assert ids.max() > 199_000
    for keep in (100, None, 100):
        _cell_scores_match_reference(cells, gains, p, n, n, keep)


def test_cell_scores_when_every_passage_is_touched(simd):
    from colcade.engine.kernels import cell_scores
    from colcade.engine.postings import Postings

    n = 50
    offsets = np.arange(0, 2 * n + 1, 2)
    codes = np.tile(np.array([0, 1], np.uint16), n)  # every passage is in both lists
    p = Postings.build(codes, offsets, 2)
    ids, scores = cell_scores(np.array([[0, 1], [1, 0]]), np.array([[0.5, 0.25], [2.0, 1.0]]), p.starts, p.lists, n, n)
    np.testing.assert_array_equal(ids, np.arange(n))
    np.testing.assert_allclose(scores, 2.5)  # each token's best list only


def test_cell_scores_over_segments_of_different_sizes_share_one_scratch():
    rng = np.random.default_rng(12)
    lists = [(n, _random_postings(rng, n, 16, most=20)) for n in (300, 40, 70_000, 500, 40)]
    for n, p in lists:  # segments of an index take turns, larger and smaller
        cells = np.stack([rng.choice(16, 3, replace=False) for _ in range(4)])
        gains = rng.random((4, 3)).astype(np.float32)
        _cell_scores_match_reference(cells, gains, p, n, n)
        _cell_scores_match_reference(cells, gains, p, n, n, keep=5)


_GUARDED = r"""
import ctypes, mmap, sys
import numpy as np
from colcade.engine import _kernels as C

C.set_simd(int(sys.argv[1]))
page = mmap.PAGESIZE
m = mmap.mmap(-1, 2 * page)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
libc = ctypes.CDLL(None)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
assert libc.mprotect(addr + page, page, 0) == 0  # the page after the rows: no access
d, n = 64, 3
for widths in ([2] * 16 + [1] * 16 + [0] * 32, [0] * 64):  # trailing 0-bit blocks; no bits at all
    widths = np.array(widths, np.uint8)
    nbytes = int(widths.sum()) // 8
    packed = np.frombuffer(m, np.uint8, count=n * nbytes, offset=page - n * nbytes)  # ends at the guard
    table = np.arange(16 * d, dtype=np.float32).reshape(16, d) / 1e3
    out = np.zeros(1, np.float32)
    args = (np.ones((1, d), np.float32), np.zeros(n, np.uint16), packed, np.zeros((1, d), np.float32), table)
    C.maxsim_mixed(*args, widths, np.array([0, n], np.int64), np.array([0], np.int64), out, 1, d, nbytes, 0)
    print(out[0])
"""


@pytest.mark.skipif(kernels.backend() == "numpy", reason="the compiled kernels are not built")
@pytest.mark.parametrize("level", [0, 1, 2])
def test_mixed_decoders_read_nothing_past_a_row(level):
    """Dimensions of 0 bits own no byte: no decoder may read one (a segment's last row ends its
    memory-mapped file). The rows end at a page with no access; a read past them kills the child."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _GUARDED, str(level)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-500:]
    assert [float(x) for x in run.stdout.split()] == pytest.approx([sum(range(64)) / 1e3] * 2)  # bucket 0 everywhere


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 300),
    nq=st.integers(1, 20),
    m=st.integers(1, 12),
    levels=st.integers(1, 50),
    seed=st.integers(0, 2**16),
)
def test_top_rows_matches_a_stable_sort_ties_included(k, nq, m, levels, seed):
    """Each column's best centroids: the kernel against argsort, on tables with many ties (few
    distinct values), so the tie rule (the lower row first) is exercised too."""
    m = min(m, k)
    table = np.random.default_rng(seed).integers(0, levels, (k, nq)).astype(np.float32) / levels
    rows, best = kernels.top_rows(table, m)
    want_rows, want_best = kernels.top_rows_reference(table, m)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(best, want_best)


def test_top_rows_refuses_shapes_it_cannot_serve():
    with pytest.raises(InvalidInputError):
        kernels.top_rows(np.zeros((3, 2), np.float32), 4)
    with pytest.raises(InvalidInputError):
        kernels.top_rows(np.zeros((3, 2), np.float32), 0)
    with pytest.raises(InvalidInputError):
        kernels.top_rows(np.zeros(3, np.float32), 1)


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("dim", [2, 6, 128, 384])
def test_dense4_scores_rows_where_they_lie_as_decoding_would(backend, dim, monkeypatch):
    from colcade.engine import dense_codes

    if backend == "numpy":
        monkeypatch.setenv("COLCADE_KERNELS", "numpy")
    rng = np.random.default_rng(dim)
    v = rng.standard_normal((300, dim)).astype(np.float32)
    v[7] = 0  # a zero row: its step is 0
    rows = dense_codes.encode(v)
    q = rng.standard_normal(dim).astype(np.float32)
    pos = np.array([299, 0, 7, 7, 150, 3])  # any order, repeats allowed
    want = dense_codes.decode(rows[pos]) @ q
    got = dense_codes.scores(rows, pos, q)
    assert got.dtype == np.float32 and got.shape == (6,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert got[2] == 0
    table = dense_codes.query_table(q)
    np.testing.assert_allclose(kernels.dense4(table, rows, pos), kernels.dense4_reference(table, rows, pos), rtol=1e-5)
    assert dense_codes.scores(rows, np.zeros(0, np.int64), q).shape == (0,)
    # Older layouts (8 bits, float16) are decoded and scored the same way.
    for old in (dense_codes.encode(v[:, :-1]) if dim > 2 else None, v.astype(np.float16)):
        if old is not None:
            qq = q[: old.shape[1] - 4] if old.dtype == np.int8 else q
            np.testing.assert_allclose(dense_codes.scores(old, pos, qq), dense_codes.decode(old[pos]) @ qq, rtol=1e-6)


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_dense4_refuses_what_would_read_out_of_bounds(backend, monkeypatch):
    from colcade.engine import dense_codes

    if backend == "numpy":
        monkeypatch.setenv("COLCADE_KERNELS", "numpy")
    rows = dense_codes.encode(np.ones((5, 8), np.float32))
    table = dense_codes.query_table(np.ones(8, np.float32))
    for bad in ([5], [-1], [0, 1, 2**40]):
        with pytest.raises(InvalidInputError, match="positions"):
            kernels.dense4(table, rows, np.array(bad))
    with pytest.raises(InvalidInputError, match="table"):
        kernels.dense4(table[:3], rows, np.array([0]))
    if backend == "c":  # the C checks, reached past the Python ones
        with pytest.raises(InvalidInputError, match="range"):
            kernels._call(kernels._c.dense4, table, rows, np.array([9], np.int64), np.empty(1, np.float32), 4)
        with pytest.raises(InvalidInputError, match="table must be"):
            kernels._call(kernels._c.dense4, table, rows, np.array([0], np.int64), np.empty(1, np.float32), 3)


def test_maxsim_codes_refuses_a_table_too_narrow_for_its_query():
    codes, offsets = np.zeros(3, np.uint16), np.array([0, 3], np.int64)
    with pytest.raises(InvalidInputError, match="cannot hold"):
        kernels.maxsim_codes(np.ones((4, 8), np.float32), codes, offsets, np.array([0]), nq=9)
    with pytest.raises(InvalidInputError, match="stride"):  # the C check, past the Python one
        kernels._call(_c.maxsim_codes, np.ones((4, 8), np.float32), codes, offsets, np.array([0]),
                      np.empty(1, np.float32), 9, 4, 8)  # fmt: skip
