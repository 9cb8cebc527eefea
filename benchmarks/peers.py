"""Speed and memory against peers: the same vectors, the same machine, one run.

    python benchmarks/peers.py                 # 10k and 100k passages (~15 minutes)
    python benchmarks/peers.py --quick         # 2k passages, seconds: what CI runs

Every system indexes the same synthetic token vectors (``synthetic.py``: ~120 tokens of 128
dims a passage, topical structure) and answers the same 32-token queries; recall@10 is
against exhaustive MaxSim. Each system is built in one fresh process (build time, size on
disk) and queried from another (resident memory of the open index, single-query p50/p95,
queries/s with 2 threads), so no system pays for another's garbage. A system that cannot be
installed or finish in its time budget gets a row that says why.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, table, timed, write_section  # noqa: E402
from synthetic import Corpus  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
PLOT = ROOT / "benchmarks" / "recall_latency.png"
SYSTEMS = [
    "colcade",
    "colcade-fast",
    "qdrant-edge",
    "lancedb",
    "numpy-exhaustive",
]  # "-fast": same index, narrower stages
NOT_RUN = {
    "PyLate (Voyager, PLAID / FastPlaid)": "not run: PyLate >= 1.3 needs fast-plaid, whose wheels pin an exact torch "
    "release; its own venv would download a multi-GB CUDA torch, beyond this machine's budget. To be added.",
    "qdrant-client local mode": "not run: local mode keeps points as Python objects and scans them in Python "
    "(its docs: for tests); qdrant-edge below is Qdrant's embedded engine.",
}


# ---------------------------------------------------------------- data
def dataset(n: int, queries: int) -> Path:
    """Vectors, queries and exhaustive-MaxSim truth, made once and cached on disk."""
    path = CACHE / f"peers-{n}-{queries}.npz"
    if path.exists():
        return path
    from colcade import EncodedQuery, LateIndex, PrecomputedEncoder
    from colcade.encoders import pool

    corpus = Corpus(n)
    tokens = [t for batch in corpus.batches(10_000) for t in batch]
    qs = np.stack(corpus.queries(tokens[:: max(1, n // 500)], queries))
    # float16, as the published comparison (compressed storage: benchmarks/compression.py)
    index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=128), storage="float16")
    index.add(ids=[str(i) for i in range(n)], tokens=tokens)
    truth = np.array([[int(h.id) for h in index.search(EncodedQuery(pool(q), q), k=10, exhaustive=True)] for q in qs])
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in tokens])]).astype(np.int64)
    CACHE.mkdir(exist_ok=True)
    np.savez(
        path,
        tokens=np.concatenate(tokens),
        offsets=offsets,
        dense=np.stack([pool(t) for t in tokens]),
        queries=qs,
        truth=truth,
    )
    return path


def rss() -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes: heap and copies, and memory-mapped files' pages."""
    fields = {}
    for line in open("/proc/self/status"):
        if line.startswith(("RssAnon:", "RssFile:")):
            fields[line.split(":")[0]] = int(line.split()[1]) * 1024
    return fields.get("RssAnon", 0), fields.get("RssFile", 0)


def disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ------------------------------------------------ systems: build(data, dir), open(dir) -> search(q, dense)
def colcade_build(z, folder: Path) -> None:
    from colcade import LateIndex, PrecomputedEncoder

    index = LateIndex.create(folder, encoder=PrecomputedEncoder(dim=128), storage="float16")
    tokens, offsets, dense = z["tokens"], z["offsets"], z["dense"]
    for start in range(0, len(offsets) - 1, 10_000):
        end = min(start + 10_000, len(offsets) - 1)
        index.add(
            ids=[str(i) for i in range(start, end)],
            tokens=[tokens[offsets[i] : offsets[i + 1]] for i in range(start, end)],
            dense=dense[start:end],
        )
    index.compact()
    index.close()


def colcade_open(folder: Path, fast: bool = False):
    from colcade import EncodedQuery, LateIndex

    index = LateIndex.open(folder)
    widths = {"n_shortlist": 1024, "n_prefilter": 50} if fast else {}
    return lambda q, d: [int(h.id) for h in index.search(EncodedQuery(d, q), k=10, **widths)]


def qdrant_config(threads: int | None = None):
    import qdrant_edge as qe

    multi = qe.MultiVectorConfig(comparator=qe.MultiVectorComparator.MaxSim)
    return qe.EdgeConfig(
        vectors={
            "dense": qe.EdgeVectorParams(size=128, distance=qe.Distance.Dot),
            # Token vectors are only for the rerank: no HNSW graph over them (Qdrant's advice), and,
            # as colcade's, float16 and memory-mapped rather than pinned in RAM.
            "tokens": qe.EdgeVectorParams(
                size=128,
                distance=qe.Distance.Dot,
                multivector_config=multi,
                datatype=qe.VectorStorageDatatype.Float16,
                memory=qe.Memory.Cached,
                hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
            ),
        },
        max_search_threads=threads,
    )


def qdrant_build(z, folder: Path) -> None:
    import qdrant_edge as qe

    shard = qe.EdgeShard.create(str(folder), qdrant_config())
    tokens, offsets, dense = z["tokens"], z["offsets"], z["dense"]
    for start in range(0, len(offsets) - 1, 1000):
        end = min(start + 1000, len(offsets) - 1)
        points = [
            qe.Point(
                i,
                {"dense": dense[i].tolist(), "tokens": tokens[offsets[i] : offsets[i + 1]].astype(np.float32).tolist()},
            )
            for i in range(start, end)
        ]
        shard.update(qe.UpdateOperation.upsert_points(points))
    shard.optimize()
    shard.close()


def qdrant_open(folder: Path):
    import qdrant_edge as qe

    shard = qe.EdgeShard.load(str(folder), qdrant_config(threads=1))

    def search(q, d):  # Qdrant's recipe: dense prefetch, then native multivector MaxSim
        request = qe.QueryRequest(
            limit=10,
            query=qe.Query.Nearest(q.tolist(), using="tokens"),
            prefetches=[qe.Prefetch(limit=1000, query=qe.Query.Nearest(d.tolist(), using="dense"))],
        )
        return [int(p.id) for p in shard.query(request)]

    return search


def lancedb_build(z, folder: Path) -> None:
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(str(folder))
    tokens, offsets = z["tokens"], z["offsets"]
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.list_(pa.float32(), 128)))])
    table_ = None
    for start in range(0, len(offsets) - 1, 2000):
        end = min(start + 2000, len(offsets) - 1)
        flat = pa.array(tokens[offsets[start] : offsets[end]].astype(np.float32).ravel())
        rows = pa.FixedSizeListArray.from_arrays(flat, 128)
        lists = pa.ListArray.from_arrays(pa.array(offsets[start : end + 1] - offsets[start], pa.int32()), rows)
        batch = pa.table({"id": pa.array(range(start, end), pa.int64()), "vector": lists}, schema=schema)
        if table_ is None:
            table_ = db.create_table("passages", data=batch, schema=schema)
        else:
            table_.add(batch)


def lancedb_open(folder: Path):
    import lancedb

    table_ = lancedb.connect(str(folder)).open_table("passages")
    return lambda q, d: [int(r["id"]) for r in table_.search(q).metric("cosine").limit(10).select(["id"]).to_list()]


def numpy_build(z, folder: Path) -> None:
    np.save(folder / "tokens.npy", z["tokens"])
    np.save(folder / "offsets.npy", z["offsets"])


def numpy_open(folder: Path):
    tokens = np.load(folder / "tokens.npy").astype(np.float32)  # in RAM, as a plain numpy user would
    offsets = np.load(folder / "offsets.npy")

    def search(q, d):
        best = np.empty((len(offsets) - 1, len(q)), np.float32)
        for start in range(0, len(tokens), 1 << 20):  # chunks keep the similarity matrix small
            end = min(start + (1 << 20), len(tokens))
            first, last = np.searchsorted(offsets, start, "right") - 1, np.searchsorted(offsets, end, "left")
            lo, hi = offsets[first], offsets[min(last, len(offsets) - 1)]
            sims = tokens[lo:hi] @ q.T
            best[first:last] = np.maximum.reduceat(sims, offsets[first:last] - lo, axis=0)
        return list(np.argsort(-best.sum(axis=1), kind="stable")[:10])

    return search


BUILD = {
    "colcade": colcade_build,
    "qdrant-edge": qdrant_build,
    "lancedb": lancedb_build,
    "numpy-exhaustive": numpy_build,
}
OPEN = {
    "colcade": colcade_open,
    "colcade-fast": lambda f: colcade_open(f, fast=True),
    "qdrant-edge": qdrant_open,
    "lancedb": lancedb_open,
    "numpy-exhaustive": numpy_open,
}


def worker(phase: str, system: str, data: Path, folder: Path, budget_s: float) -> dict:
    z = np.load(data)
    if phase == "build":
        start = time.perf_counter()
        BUILD[system](z, folder)
        return {"build_s": time.perf_counter() - start, "disk": disk(folder)}
    queries, truth = z["queries"], z["truth"]
    dense = np.stack([q.mean(0) / np.linalg.norm(q.mean(0)) for q in queries]).astype(np.float32)
    before = rss()
    search = OPEN[system](folder)
    search(queries[0], dense[0])  # warm
    latencies, recalls = [], []
    started = time.perf_counter()
    for q, d, t in zip(queries, dense, truth):
        s = time.perf_counter()
        got = search(q, d)
        latencies.append((time.perf_counter() - s) * 1e3)
        recalls.append(len(set(got) & set(t.tolist())) / 10)
        if time.perf_counter() - started > budget_s and len(latencies) >= 5:
            break
    n = len(latencies)
    with ThreadPoolExecutor(2) as pool:
        s = time.perf_counter()
        list(pool.map(search, queries[:n], dense[:n]))
        qps = n / (time.perf_counter() - s)
    after = rss()
    return {
        "p50": float(np.median(latencies)),
        "p95": float(np.percentile(latencies, 95)),
        "qps": qps,
        "recall": float(np.mean(recalls)),
        "queries": n,
        "anon": after[0] - before[0],
        "file": after[1] - before[1],
    }


def run_system(system: str, data: Path, folder: Path, budget_s: float) -> dict:
    """Build (once per index kind) and query in fresh processes; a failure or timeout becomes a reason."""

    def call(phase: str, target: Path) -> dict:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", phase, system, str(data), str(target), str(budget_s)],
            capture_output=True,
            text=True,
            timeout=budget_s * 6 + 120,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
            )
        return json.loads(proc.stdout.strip().splitlines()[-1])

    base = system.replace("-fast", "")
    target = folder / base
    try:
        built = {}
        if not target.exists():
            target.mkdir(parents=True)
            built = call("build", target)
        return {**built, **call("query", target)}
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {budget_s * 6 + 120:.0f} s"}
    except ImportError as exc:
        return {"error": f"not installed ({exc})"}
    except Exception as exc:
        return {"error": str(exc)[:160]}


# ---------------------------------------------------------------- kernels
def kernel_rows(quick: bool) -> list[list[object]]:
    from colcade.engine import kernels

    rng = np.random.default_rng(0)
    n, t, d, nq = (200 if quick else 1000), 120, 128, 32
    docs32 = rng.standard_normal((n, t, d)).astype(np.float32)
    tokens16 = docs32.reshape(-1, d).astype(np.float16)
    offsets = np.arange(n + 1, dtype=np.int64) * t
    q = rng.standard_normal((nq, d)).astype(np.float32)
    contenders = {"colcade (compiled, float16 tokens)": lambda: kernels.maxsim(q, tokens16, offsets)}
    for name in ("fast_maxsim", "maxsim_cpu"):
        try:
            module = __import__(name)
            contenders[f"{name} (float32 tokens)"] = lambda m=module: m.maxsim_scores(q, docs32)
        except ImportError:
            pass
    contenders["numpy (matmul + max per passage)"] = lambda: [(q @ doc.T).max(axis=1).sum() for doc in docs32]
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(3 if quick else 9):  # interleaved rounds
        for name, fn in contenders.items():
            times[name] += list(timed(fn, 2))
    ref = np.array([(q @ doc.T).max(axis=1).sum() for doc in docs32])
    base = np.median(times["colcade (compiled, float16 tokens)"])
    rows = []
    for name, fn in contenders.items():
        err = float(np.abs(np.asarray(fn(), dtype=np.float64).ravel() - ref).max() / np.abs(ref).max())
        med = np.median(times[name])
        rows.append([name, f"{med * 1e3:.2f}", f"{med / base:.1f}x", f"{err:.1e}"])
    return rows


def plot(results: dict[int, dict[str, dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {s: plt.cm.tab10(i) for i, s in enumerate(SYSTEMS)}
    markers = dict(zip(sorted(results), "os^D"))
    for n, by_system in sorted(results.items()):
        for system, r in by_system.items():
            if "p50" in r:
                ax.scatter(
                    r["p50"],
                    r["recall"],
                    color=colors[system],
                    marker=markers[n],
                    s=50,
                    label=f"{system}, {n // 1000}k passages",
                )
    ax.set_xscale("log")
    ax.set_xlabel("single-query p50 latency, ms (log scale)")
    ax.set_ylabel("recall@10 vs exhaustive MaxSim")
    ax.set_title("Recall against latency: same vectors, one machine")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        phase, system, data, folder, budget = args.worker
        print(json.dumps(worker(phase, system, Path(data), Path(folder), float(budget))))
        return

    sizes = args.sizes or ([2_000] if args.quick else [10_000, 100_000])
    n_queries, budget = (20, 20.0) if args.quick else (100, 60.0)
    results: dict[int, dict[str, dict]] = {}
    rows = []
    for n in sizes:
        data = dataset(n, n_queries)
        with tempfile.TemporaryDirectory() as tmp:
            results[n] = {}
            for system in SYSTEMS:
                r = run_system(system, data, Path(tmp), budget)
                results[n][system] = r
                print(f"{n} {system}: {r}", file=sys.stderr)
        best_peer = max(
            (
                r["qps"]
                for s, r in results[n].items()
                if "qps" in r and not s.startswith("colcade") and r["recall"] >= 0.99
            ),
            default=None,
        )
        for system, r in results[n].items():
            if "error" in r:
                rows.append([f"{n:,}", system, r["error"], "", "", "", "", "", ""])
                continue
            ratio = f" ({r['qps'] / best_peer:.1f}x best peer)" if best_peer and system.startswith("colcade") else ""
            built = (
                [f"{r['build_s']:.1f}", f"{r['disk'] / 2**20:.0f}"] if "build_s" in r else ["same index", "same index"]
            )
            rows.append(
                [
                    f"{n:,}",
                    system,
                    *built,
                    f"{r['anon'] / 2**20:.0f} + {r['file'] / 2**20:.0f}",
                    f"{r['p50']:.2f}",
                    f"{r['p95']:.2f}",
                    f"{r['qps']:.3g}{ratio}",
                    f"{r['recall']:.3f}",
                ]
            )
    for name, reason in NOT_RUN.items():
        rows.append(["", name, reason, "", "", "", "", "", ""])
    if not args.quick:
        plot(results)
    body = "\n\n".join(
        [
            "## Speed and memory against peers (same vectors, same machine, one run)",
            table(
                [
                    "passages",
                    "system",
                    "build s",
                    "disk MiB",
                    "RAM MiB: heap + mapped files",
                    "p50 ms",
                    "p95 ms",
                    "queries/s (2 threads)",
                    "recall@10",
                ],
                rows,
            ),
            f"Synthetic vectors (`benchmarks/synthetic.py`), ~120 tokens x 128 dims a passage, "
            f"{n_queries} queries of 32 tokens; "
            "recall@10 against exhaustive MaxSim. colcade uses one thread a query; "
            "qdrant-edge is set to one search thread "
            "and stores token vectors as colcade does (float16, memory-mapped); "
            "LanceDB's Rust engine picks its own threads. "
            "qdrant-edge runs Qdrant's recipe (dense prefetch of 1,000, then "
            "native MaxSim); LanceDB scans its multivector column (no index). A system stops at its time budget; "
            "its latency then comes from the queries it finished. "
            "RAM is what opening the index and answering the queries "
            "added to the process: anonymous memory (heap, copies) plus pages of memory-mapped files, which the OS can "
            "drop and re-read. 1M passages were not run: the float16 token store alone "
            "is 30 GB, beyond this machine's disk and the 30-minute budget."
            + ("" if args.quick else f"\n\n![recall against latency]({PLOT.relative_to(ROOT)})"),
            "### The rerank kernel against the PyPI MaxSim kernels",
            table(
                [
                    "kernel (1,000 passages x 120 tokens x 128 dims, 32 query tokens, 1 thread)"
                    if not args.quick
                    else "kernel (200 passages)",
                    "median ms",
                    "vs colcade",
                    "max relative error",
                ],
                kernel_rows(args.quick),
            ),
        ]
    )
    write_section("peers-quick" if args.quick else "peers", body, args.out)


if __name__ == "__main__":
    main()
