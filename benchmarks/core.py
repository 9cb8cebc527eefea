"""Core speed and memory: the kernels against the 1-core sgemm peak, and search at 100k passages.

    python benchmarks/core.py            # full run (~5 minutes on 2 cores), updates BENCHMARKS.md
    python benchmarks/core.py --quick    # seconds; what CI runs so the script cannot rot

Everything runs on one thread (BLAS, FAISS and the kernels), as a single search does.
Contenders are interleaved round by round and medians are reported, since machines are shared.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads BLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, rss_anon, table, timed, write_section  # noqa: E402
from synthetic import Corpus  # noqa: E402

from colcade import EncodedQuery, LateIndex, PrecomputedEncoder  # noqa: E402
from colcade.encoders import pool  # noqa: E402
from colcade.engine import kernels  # noqa: E402


def kernel_rows(quick: bool) -> list[list[object]]:
    rng = np.random.default_rng(0)
    n, t, d, nq = (200 if quick else 1000), 120, 128, 32
    tokens = rng.standard_normal((n * t, d)).astype(np.float16)
    offsets = np.arange(n + 1, dtype=np.int64) * t
    q = rng.standard_normal((nq, d)).astype(np.float32)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    n_bits = 2_000 if quick else 20_000
    bits = kernels.binarize(np.tile(tokens, (n_bits // n, 1)))
    bit_offsets = np.arange(n_bits + 1, dtype=np.int64) * t
    qbits = kernels.binarize(q)
    ref_n = 50 if quick else 200
    sub = offsets[: ref_n + 1]

    rounds, times = (3 if quick else 15), {k: [] for k in ("sgemm", "float", "hamming", "float_ref", "hamming_ref")}
    for _ in range(rounds):  # interleaved: every contender sees the same machine load
        times["sgemm"] += list(timed(lambda: a @ a, 3))
        times["float"] += list(timed(lambda: kernels.maxsim(q, tokens, offsets), 3))
        times["hamming"] += list(timed(lambda: kernels.maxsim_hamming(qbits, bits, bit_offsets, None, d), 3))
        times["float_ref"] += list(timed(lambda: kernels.maxsim_reference(q, tokens, sub, np.arange(ref_n)), 1))
        times["hamming_ref"] += list(
            timed(lambda: kernels.maxsim_hamming_reference(qbits, bits, sub, np.arange(ref_n), d), 1)
        )
    med = {k: float(np.median(v)) for k, v in times.items()}
    peak = 2 * 1024**3 / med["sgemm"] / 1e9
    gflops = 2 * n * t * d * nq / med["float"] / 1e9
    ref_gflops = 2 * ref_n * t * d * nq / med["float_ref"] / 1e9
    mps = n_bits / med["hamming"] / 1e6
    ref_mps = ref_n / med["hamming_ref"] / 1e6
    return [
        [
            "sgemm 1024^3 (numpy/OpenBLAS, 1 thread)",
            f"{med['sgemm'] * 1e3:.2f} ms",
            f"{peak:.1f} GFLOP/s",
            "the peak",
            "",
        ],
        [
            f"float MaxSim, {n} x {t} tokens x {d} dims, {nq} query tokens ({kernels.backend()})",
            f"{med['float'] * 1e3:.2f} ms",
            f"{gflops:.1f} GFLOP/s = {100 * gflops / peak:.0f}% of peak",
            ">= 80% of peak",
            f"{gflops / ref_gflops:.0f}x numpy",
        ],
        [
            f"Hamming MaxSim, {t} tokens x {d} bits, {nq} query tokens",
            f"{med['hamming'] * 1e3 / n_bits * 1e3:.2f} µs/passage",
            f"{mps:.2f} M passages/s",
            ">= 0.8 M/s",
            f"{mps / ref_mps:.0f}x numpy",
        ],
    ]


def build(path: Path, n: int, queries: int) -> dict[str, float]:
    corpus = Corpus(n)
    # float16: these tables measure the exact cascade; benchmarks/compression.py measures compressed storage
    index = LateIndex.create(path, encoder=PrecomputedEncoder(dim=corpus.dim, name="synthetic-128"), storage="float16")
    samples: list[np.ndarray] = []
    start = time.perf_counter()
    for batch in corpus.batches(10_000):
        index.add(tokens=batch)
        samples += batch[:: max(1, len(batch) // 20)]
    index.compact()  # one segment, as after a bulk load
    seconds = time.perf_counter() - start
    stats = index.stats()
    index.close()
    np.save(path.parent / "queries.npy", np.stack(corpus.queries(samples, queries)))
    return {"build_s": seconds, "tokens": stats.tokens, "disk": stats.bytes_on_disk, "shortlist": stats.shortlist}


def measure(path: Path, exact_queries: int) -> None:
    """Runs in a fresh process: open, search, report latency, recall and resident memory."""
    before = rss_anon()
    index = LateIndex.open(path)
    queries = [EncodedQuery(dense=pool(q), tokens=q) for q in np.load(path.parent / "queries.npy")]
    settings = {"default": {}, "fast": {"n_shortlist": 1024, "n_prefilter": 50}}
    for q in queries[:5]:  # warm the page cache and FAISS
        index.search(q, k=10)
    lat: dict[str, list[float]] = {name: [] for name in settings}
    stages: dict[str, list[list[float]]] = {name: [] for name in settings}
    results: dict[str, list[set[str]]] = {name: [] for name in settings}
    for q in queries:
        for name, widths in settings.items():  # interleaved
            start = time.perf_counter()
            hits = index.search(q, k=10, **widths)
            lat[name].append((time.perf_counter() - start) * 1e3)
            stages[name].append([s.ms for s in hits.stats])
            results[name].append({h.id for h in hits})
    resident = rss_anon() - before
    recall = {name: [] for name in settings}
    for i, q in enumerate(queries[:exact_queries]):
        truth = {h.id for h in index.search(q, k=10, exhaustive=True)}
        for name in settings:
            recall[name].append(len(truth & results[name][i]) / 10)
    out = {
        name: {
            "p50": float(np.percentile(lat[name], 50)),
            "p95": float(np.percentile(lat[name], 95)),
            "stages": [float(x) for x in np.median(stages[name], axis=0)],
            "recall": float(np.mean(recall[name])),
        }
        for name in settings
    }
    out["resident"] = resident
    print(json.dumps(out))


def search_rows(n: int, queries: int, exact_queries: int) -> tuple[list[list[object]], str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index"
        built = build(path, n, queries)
        proc = subprocess.run(
            [sys.executable, __file__, "--measure", str(path), "--exact-queries", str(exact_queries)],
            capture_output=True,
            text=True,
            check=True,
        )
        m = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = []
    for name, r in ((k, v) for k, v in m.items() if k != "resident"):
        widths = "shortlist 1024, prefilter 50" if name == "fast" else "auto widths (see README)"
        rows.append(
            [
                f"{name}: {widths}",
                f"{r['p50']:.2f}",
                f"{r['p95']:.2f}",
                " / ".join(f"{s:.2f}" for s in r["stages"]),
                f"{r['recall']:.3f}",
            ]
        )
    per_token = m["resident"] / built["tokens"]
    summary = (
        f"{n:,} passages, {built['tokens']:,} tokens x 128 dims (synthetic, see `benchmarks/synthetic.py`), "
        f"{queries} queries of 32 tokens, k = 10, one thread, encoding excluded. "
        f"Build (add in batches of 10k + compact): {built['build_s']:.1f} s; on disk {built['disk'] / 2**20:.0f} MiB "
        f"({built['disk'] / built['tokens']:.1f} bytes/token); shortlist index: {built['shortlist']}. "
        f"Resident memory beyond the memory-mapped files after open and all searches: "
        f"{m['resident'] / 2**20:.0f} MiB = **{per_token:.1f} bytes/token** (target <= 24). "
        f"Recall@10 is measured against exhaustive MaxSim on {exact_queries} queries."
    )
    return rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--passages", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--exact-queries", type=int, default=20, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure, args.exact_queries)

    n = args.passages or (3_000 if args.quick else 100_000)
    queries, exact = (20, 5) if args.quick else (200, 20)
    kernel = table(["kernel", "median time", "throughput", "target", "vs reference"], kernel_rows(args.quick))
    rows, summary = search_rows(n, queries, exact)
    search = table(
        ["setting", "p50 ms", "p95 ms", "stage ms (shortlist / prefilter / rerank, median)", "recall@10 vs exhaustive"],
        rows,
    )
    body = (
        "## Core: kernels and search\n\n"
        "### Kernels (one core)\n\n" + kernel + "\n\n"
        f"### Search at {n:,} passages (target: p50 <= 6 ms at recall@10 >= 0.99)\n\n" + search + "\n\n" + summary
    )
    write_section("core-quick" if args.quick else "core", body, args.out)


if __name__ == "__main__":
    main()
