"""The dense shortlist at a million passages: open time, first search, latency, recall, memory.

    python benchmarks/shortlist.py                          # 1M passages x 384 dims (~15 minutes)
    python benchmarks/shortlist.py --baseline OLD/src       # also another colcade's src/, side by side
    python benchmarks/shortlist.py --quick                  # 60k passages: what CI runs

The dense vectors are the default encoder's real passage vectors from ../shared/data (all four
collections, about 11k) with noise around them (each synthetic passage keeps cosine ~0.85 to the
real one it came from), so they cluster as real text does; queries are the collections' real
query vectors. Each passage has one token vector, its dense vector, so exhaustive MaxSim is the
exact dense ranking and recall@10 against it measures the shortlist. Each implementation opens
the index in a fresh process: open, the first search (which builds what the shortlist needs),
then 200 searches with the shortlist at 1,000 and no prefilter pruning.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
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
from embeddings import COLLECTIONS, load  # noqa: E402
from report import ROOT, rss_anon, table, write_section  # noqa: E402

WIDTHS = {"n_shortlist": 1000, "n_prefilter": 1000}
QUERIES, EXACT = 200, 30


def real_vectors() -> tuple[np.ndarray, np.ndarray]:
    """(passage dense vectors, query dense vectors) of the shared collections by the default encoder."""
    passages, queries = [], []
    for name in COLLECTIONS:
        _, p, q = load(name)
        passages.append(p.dense)
        queries.append(q.dense)
    return np.concatenate(passages), np.concatenate(queries)


def synthetic(parents: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` unit vectors, each a real vector plus Gaussian noise (cosine to it ~0.85), float32."""
    rng = np.random.default_rng(seed)
    v = parents[rng.integers(len(parents), size=n)]
    v = v + rng.standard_normal(v.shape).astype(np.float32) * (0.62 / np.sqrt(v.shape[1]))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def build(path: Path, n: int) -> dict[str, float]:
    from colcade import LateIndex, PrecomputedEncoder

    parents, queries = real_vectors()
    index = LateIndex.create(path, encoder=PrecomputedEncoder(dim=parents.shape[1], name="minilm-dense-synthetic"))
    start = time.perf_counter()
    step = 50_000
    for i, first in enumerate(range(0, n, step)):
        dense = synthetic(parents, min(step, n - first), seed=i)
        index.add(ids=[f"p{j}" for j in range(first, first + len(dense))], tokens=list(dense[:, None, :]), dense=dense)
        print(f"\rbuilt {first + len(dense):,} / {n:,}", end="", file=sys.stderr)
    index.compact()
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    shortlist = index.stats().shortlist  # takes the vectors in: what the first search after a build does
    first_s = time.perf_counter() - start
    index.close()
    rng = np.random.default_rng(1)
    np.save(path.parent / "queries.npy", queries[rng.choice(len(queries), QUERIES, replace=False)])
    print(file=sys.stderr)
    return {"build_s": build_s, "first_after_build_s": first_s, "shortlist": shortlist}


def measure(path: Path) -> None:
    """In a fresh process (whose ``colcade`` may be another checkout's): print one JSON line."""
    import colcade
    from colcade import EncodedQuery, LateIndex

    before = rss_anon()
    start = time.perf_counter()
    index = LateIndex.open(path)
    open_s = time.perf_counter() - start
    queries = [EncodedQuery(dense=q, tokens=q[None, :]) for q in np.load(path.parent / "queries.npy")]
    start = time.perf_counter()
    index.search(queries[0], k=10, **WIDTHS)
    first_s = time.perf_counter() - start
    total, stage, found = [], [], []
    for q in queries:
        start = time.perf_counter()
        hits = index.search(q, k=10, **WIDTHS)
        total.append((time.perf_counter() - start) * 1e3)
        stage.append(hits.stats[0].ms)
        found.append({h.id for h in hits})
    resident = rss_anon() - before
    recall = [
        len({h.id for h in index.search(q, k=10, exhaustive=True)} & found[i]) / 10
        for i, q in enumerate(queries[:EXACT])
    ]
    result = {
        "source": str(Path(colcade.__file__).parent.parent),
        "open_s": open_s,
        "first_s": first_s,
        "stage_ms": float(np.median(stage)),
        "p50_ms": float(np.median(total)),
        "recall": float(np.mean(recall)),
        "resident": resident,
    }
    print(json.dumps(result))


def run_measure(path: Path, src: Path | None) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    proc = subprocess.run(
        [sys.executable, __file__, "--measure", str(path)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def baseline_label(src: Path) -> str:
    """The baseline's commit, when its src/ folder is in a git checkout."""
    proc = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"baseline ({proc.stdout.strip()})" if proc.returncode == 0 else "baseline"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60k passages (CI)")
    parser.add_argument("--passages", type=int, default=None)
    parser.add_argument("--baseline", type=Path, default=None, help="another colcade checkout's src/ folder")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure)
    n = args.passages or (60_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks" / ".cache") as tmp:
        path = Path(tmp) / "index"
        built = build(path, n)
        runs = [("this checkout", None)] + ([(baseline_label(args.baseline), args.baseline)] if args.baseline else [])
        rows = []
        for label, src in runs * 2:  # twice, interleaved: the second open of each is from a warm page cache
            r = run_measure(path, src)
            rows.append(
                [
                    f"{label}, {'first' if len(rows) < len(runs) else 'second'} run",
                    f"{r['open_s']:.2f}",
                    f"{r['first_s']:.2f}",
                    f"{r['stage_ms']:.2f}",
                    f"{r['p50_ms']:.2f}",
                    f"{r['recall']:.3f}",
                    f"{r['resident'] / 2**20:.0f}",
                ]
            )
            print(rows[-1], file=sys.stderr)
    body = "\n\n".join(
        [
            f"## The dense shortlist at {n:,} passages (384 dims)",
            table(
                [
                    "implementation",
                    "open s",
                    "first search s",
                    "shortlist stage ms (median)",
                    "search p50 ms",
                    f"recall@10 vs exact ({EXACT} queries)",
                    "resident MiB after open + searches",
                ],
                rows,
            ),
            f"Build ({n:,} passages added in batches of 50k, then compact): {built['build_s']:.0f} s; the first "
            f"look at the shortlist after it (training and saving the inverted file): "
            f"{built['first_after_build_s']:.1f} s; shortlist kind: {built['shortlist']}. "
            "Synthetic passages around the default encoder's real passage vectors, real queries "
            "(benchmarks/shortlist.py says how); shortlist 1,000, no prefilter pruning, one thread, "
            f"{QUERIES} queries.",
        ]
    )
    write_section("shortlist-quick" if args.quick else "shortlist", body, args.out)


if __name__ == "__main__":
    main()
