"""Compressed storage at scale: 10k / 100k / 1M passages x ~120 tokens x 128 dims (issue 16).

    python benchmarks/scale.py                          # 10k, 100k and 1M passages, both kinds
    python benchmarks/scale.py --sizes 10000 100000     # some sizes
    python benchmarks/scale.py --quick                  # 5k passages, both kinds (CI)
    python benchmarks/scale.py --sizes 1000000 --kinds text --section scale-1m   # one size, its own table

Vectors come from benchmarks/realistic.py: tokens drawn around centroids fitted to the default
encoder's real tokens (projected to 128 dimensions), either as text (real passages' centroid
sequences) or as bags of unrelated patches (ColPali-like pages). Queries are the collections'
real queries, projected (~14 tokens). The index is built with the default settings (compressed
storage, 2 bits a dimension) by ``add`` in batches of 50k and one ``compact``; the first search
after it (which trains and saves the dense shortlist's inverted file above 50k) counts in the
build. Each size is then opened in a fresh process: open time, resident memory beyond the
memory-mapped files, p50/p95 of one query at a time on one thread at the default widths, and
fidelity@10 to exhaustive MaxSim over the same stored vectors (and to exhaustive float MaxSim
over the vectors before compression, computed here from the regenerated passages).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realistic import fit, passages  # noqa: E402
from report import ROOT, rss_anon, section_rows, table, write_section  # noqa: E402

BATCH = 50_000
# --quick fits the token model to Cranfield alone (what CI has encoded), with fewer centroids.
QUICK_FIT = {"collections": ["cranfield"], "k": 1024}


def model():
    """The fitted model of real tokens (realistic.fit), the quick one when COLCADE_SCALE_QUICK is set."""
    return fit(**QUICK_FIT) if os.environ.get("COLCADE_SCALE_QUICK") else fit()


LATENCY_QUERIES, FIDELITY_QUERIES = 200, 30


def build(path: Path, n: int, kind: str) -> dict:
    from colcade import EncodedQuery, LateIndex, PrecomputedEncoder
    from colcade.encoders import pool

    fitted = model()
    index = LateIndex.create(path, encoder=PrecomputedEncoder(dim=128, name=f"realistic-{kind}"))
    seconds, done = 0.0, 0  # colcade's time only: generating the vectors is not building the index
    for batch in passages(fitted, n, kind, batch=BATCH):
        start = time.perf_counter()
        index.add(ids=[str(i) for i in range(done, done + len(batch))], tokens=batch)
        seconds += time.perf_counter() - start
        done += len(batch)
        print(f"\r{kind}: {done:,} / {n:,} passages, {seconds:.0f} s", end="", file=sys.stderr)
    start = time.perf_counter()
    index.compact()
    q = fitted.queries[0]
    index.search(EncodedQuery(dense=pool(q), tokens=q), k=10)  # trains what the shortlist saves
    seconds += time.perf_counter() - start
    stats = index.stats()
    index.close()
    print(file=sys.stderr)
    docs = sum(f.stat().st_size for f in path.glob("docs.sqlite*"))  # ids, texts, metadata, lexical index
    return {
        "build_s": seconds,
        "tokens": stats.tokens,
        "disk": stats.bytes_on_disk,
        "docs": docs,
        "shortlist": stats.shortlist,
    }


def float_truth(n: int, kind: str, queries: list[np.ndarray]) -> list[list[str]]:
    """Exhaustive MaxSim over the vectors before compression (float16, as generated), top 10."""
    fitted = model()
    qs = np.concatenate(queries).astype(np.float32)
    bounds = np.cumsum([0] + [len(q) for q in queries])
    scores = np.empty((n, len(queries)), np.float32)
    done = 0
    for batch in passages(fitted, n, kind, batch=2_000):  # the similarity matrix stays ~1 GB
        lengths = np.array([len(t) for t in batch])
        sims = np.concatenate(batch).astype(np.float32) @ qs.T  # [tokens, query tokens]
        best = np.maximum.reduceat(sims, np.concatenate([[0], np.cumsum(lengths)[:-1]]), axis=0)
        scores[done : done + len(batch)] = np.add.reduceat(best, bounds[:-1], axis=1)
        done += len(batch)
    return [[str(i) for i in np.argsort(-scores[:, j], kind="stable")[:10]] for j in range(len(queries))]


def measure(path: Path) -> None:
    """In a fresh process: open, latency, resident memory, fidelity; one JSON line."""
    from colcade import EncodedQuery, LateIndex
    from colcade.encoders import pool

    queries = [q for q in model().queries if len(q)][:LATENCY_QUERIES]
    before = rss_anon()
    start = time.perf_counter()
    index = LateIndex.open(path)
    open_s = time.perf_counter() - start
    encoded = [EncodedQuery(dense=pool(q), tokens=q) for q in queries]
    index.search(encoded[0], k=10)
    times, stages, found = [], [], []
    for q in encoded:
        t0 = time.perf_counter()
        hits = index.search(q, k=10)
        times.append((time.perf_counter() - t0) * 1e3)
        stages.append([s.ms for s in hits.stats])
        found.append([h.id for h in hits])
    resident = rss_anon() - before
    exact = [[h.id for h in index.search(q, k=10, exhaustive=True)] for q in encoded[:FIDELITY_QUERIES]]
    print(
        json.dumps(
            {
                "open_s": open_s,
                "p50": float(np.median(times)),
                "p95": float(np.percentile(times, 95)),
                "stages": [s.name for s in hits.stats],
                "stage_ms": [float(x) for x in np.median(stages, axis=0)],
                "resident": resident,
                "found": found[:FIDELITY_QUERIES],
                "exact": exact,
                "query_tokens": float(np.mean([len(q) for q in queries])),
            }
        )
    )


def overlap(a: list[list[str]], b: list[list[str]]) -> float:
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b)]))


def section_of(args: argparse.Namespace) -> str:
    return "scale-quick" if args.quick else args.section


def report(rows: list[list[str]], args: argparse.Namespace, kept: tuple[list[list[str]], str] = ([], "")) -> None:
    """Write the table; ``kept``: an earlier run's rows (and how they were made) this run leaves standing."""
    header = [
        "passages",
        "kind",
        "disk B/token: folder (vector files)",
        "resident B/token",
        "build s",
        "open s",
        "p50 / p95 ms",
        "stages (median ms)",
        "fidelity@10 to exhaustive (same codes)",
        "fidelity@10 to float",
        "exhaustive over codes vs float",
    ]
    measured = {(r[0], r[1]) for r in rows}
    earlier = [r for r in kept[0] if (r[0], r[1]) not in measured]
    body = (
        "## Compressed storage at scale (d=128, realistic synthetic tokens)\n\n"
        + table(header, earlier + rows)
        + f"\n\nTokens around centroids fitted to the default encoder's real tokens, projected to 128 "
        "dimensions (benchmarks/realistic.py); text passages follow real passages' centroid sequences, "
        "patch passages draw each token's centroid on its own. ~120 tokens a passage; queries are the "
        f"shared collections' real queries, projected ({LATENCY_QUERIES} for latency, one thread, default "
        f"widths; fidelity on the first {FIDELITY_QUERIES}). Built by `add` in batches of {BATCH:,} and one "
        "`compact`, plus the first search; resident memory is what opening and searching added beyond "
        "the memory-mapped files. Disk: the whole index folder, and in brackets without `docs.sqlite` (the "
        "document database: ids, texts, metadata and the lexical index, ~44 bytes a passage here)."
    )
    if earlier:
        names = " and ".join(f"{r[0]} {r[1]}" for r in earlier)
        body += f" Kept from an earlier run (--keep): the {names} row{'s' if len(earlier) > 1 else ''}, {kept[1]}"
    write_section(section_of(args), body, args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--kinds", nargs="+", default=["text", "patches"])
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--section", default="scale", help="the BENCHMARKS.md section to write (a size run apart)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the section's rows of sizes and kinds this run does not measure"
    )
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure)
    sizes = args.sizes or ([5_000] if args.quick else [10_000, 100_000, 1_000_000])
    if args.quick:
        os.environ["COLCADE_SCALE_QUICK"] = "1"  # also for the measuring subprocess
    kept = section_rows(section_of(args), args.out) if args.keep else ([], "")
    rows: list[list[str]] = []
    for n in sizes:
        for kind in args.kinds:
            folder = Path(
                tempfile.mkdtemp(
                    dir=ROOT / "benchmarks" / ".cache" if (ROOT / "benchmarks" / ".cache").is_dir() else None
                )
            )
            try:
                built = build(folder / "index", n, kind)
                proc = subprocess.run(
                    [sys.executable, __file__, "--measure", str(folder / "index")],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                r = json.loads(proc.stdout.strip().splitlines()[-1])
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            stages = ", ".join(f"{name} {ms:.1f}" for name, ms in zip(r["stages"], r["stage_ms"]))
            rows.append(
                [
                    f"{n:,}",
                    kind,
                    f"{built['disk'] / built['tokens']:.1f} ({(built['disk'] - built['docs']) / built['tokens']:.1f})",
                    f"{r['resident'] / built['tokens']:.2f}",
                    f"{built['build_s']:.0f}",
                    f"{r['open_s']:.2f}",
                    f"{r['p50']:.1f} / {r['p95']:.1f}",
                    stages,
                    f"{overlap(r['found'], r['exact']):.3f}",
                    "(computing)",
                    "(computing)",
                ]
            )
            print(rows[-1], file=sys.stderr)
            report(rows, args, kept)  # what the index measured survives an interruption of the float truth below
            queries = [q for q in model().queries if len(q)][:FIDELITY_QUERIES]
            truth = float_truth(n, kind, queries)
            rows[-1][-2:] = [f"{overlap(r['found'], truth):.3f}", f"{overlap(r['exact'], truth):.3f}"]
            print(rows[-1], file=sys.stderr)
            report(rows, args, kept)


if __name__ == "__main__":
    main()
