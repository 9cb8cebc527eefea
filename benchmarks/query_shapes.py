"""The rerank kernels at the query shapes users get, against the 1-core sgemm peak.

MiniLM queries are short (~14 token vectors after token selection), and the default encoder's
vectors have 384 dimensions; the core benchmark's 32 query tokens x 128 dims flatters the
kernel (more query rows share each passage row it loads). This measures float16 MaxSim and the
compressed kernel (residuals decoded on the fly: the default rotated coding, and the 2 bits in
every dimension it replaced) at 14 and 32 query tokens, 128 and 384 dims, on real token vectors
(SciFact's, by the default encoder, from the benchmark cache) for d=384.

    python benchmarks/query_shapes.py
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the peak of one core: before numpy loads BLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, table, timed, write_section  # noqa: E402

from colcade.engine import kernels  # noqa: E402
from colcade.engine.codec import ResidualCodec  # noqa: E402

PASSAGES, TOKENS = 1000, 120


def real_tokens(n: int) -> np.ndarray:
    """``n`` real d=384 token vectors (SciFact, default encoder), or None without the cache."""
    from embeddings import load

    _, passages, _ = load("scifact")
    return np.asarray(passages.vectors[:n], np.float32)


def main() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    offsets = np.arange(PASSAGES + 1, dtype=np.int64) * TOKENS
    real = real_tokens(PASSAGES * TOKENS + 64)
    shapes = {}
    for d in (128, 384):
        if d == 384:
            v, queries = real[: PASSAGES * TOKENS], real[PASSAGES * TOKENS :]
        else:
            v = rng.standard_normal((PASSAGES * TOKENS + 64, d)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            v, queries = v[: PASSAGES * TOKENS], v[PASSAGES * TOKENS :]
        codec, before = ResidualCodec.train(v[:65536]), ResidualCodec.train(v[:65536], nbits=2, rotate=False)
        shapes[d] = (v.astype(np.float16), (codec, *codec.encode(v)), (before, *before.encode(v)), queries)
    rounds = 9
    times: dict[str, list[float]] = {"sgemm": []}
    for _ in range(rounds):  # interleaved: every contender sees the same machine load
        times["sgemm"] += list(timed(lambda: a @ a, 3))
        for d, (f16, coded, unrotated, queries) in shapes.items():
            for nq in (14, 32):
                q = np.ascontiguousarray(queries[:nq])
                times.setdefault(f"f16 {d} {nq}", []).extend(
                    timed(lambda q=q, f16=f16: kernels.maxsim(q, f16, offsets), 3)
                )
                for key, (c, s, p) in (("res", coded), ("before", unrotated)):
                    times.setdefault(f"{key} {d} {nq}", []).extend(
                        timed(lambda q=q, c=c, s=s, p=p: kernels.maxsim_residual(q, c, s, p, offsets, None), 3)
                    )
    med = {k: float(np.median(v)) for k, v in times.items()}
    peak = 2 * 1024**3 / med["sgemm"] / 1e9
    rows = []
    for d in (128, 384):
        for nq in (14, 32):
            flops = 2 * PASSAGES * TOKENS * d * nq
            f16, res = med[f"f16 {d} {nq}"], med[f"res {d} {nq}"]
            rows.append(
                [
                    d,
                    nq,
                    f"{f16 * 1e3:.2f}",
                    f"{flops / f16 / 1e9:.0f} ({100 * flops / f16 / 1e9 / peak:.0f}%)",
                    f"{res * 1e3:.2f}",
                    f"{flops / res / 1e9:.0f} ({100 * flops / res / 1e9 / peak:.0f}%)",
                    f"{res / f16:.2f}x",
                    f"{med[f'before {d} {nq}'] * 1e3:.2f}",
                    f"{res / med[f'before {d} {nq}']:.2f}x",
                ]
            )
    body = (
        "### The rerank kernels at the query shapes users get\n\n"
        f"{PASSAGES:,} passages x {TOKENS} tokens, one thread, kernel `{kernels.backend()}`; d=384 rows are SciFact "
        f"token vectors from the default encoder, d=128 random unit vectors. sgemm peak {peak:.0f} GFLOP/s "
        "(numpy/OpenBLAS 1024^3, 1 thread); GFLOP/s counts the dot products (2 nq d a passage token). "
        "Compressed: the default coding (rotated, 1.75 bits a dimension by variance); *before*: 2 bits in every "
        "dimension, unrotated, as indexes written before hold.\n\n"
        + table(
            [
                "dims",
                "query tokens",
                "float16 ms",
                "float16 GFLOP/s (of peak)",
                "compressed ms",
                "compressed GFLOP/s (of peak)",
                "compressed / float16",
                "2 bits unrotated ms (before)",
                "compressed / before",
            ],
            rows,
        )
    )
    write_section("query-shapes", body, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
