"""How many centroids a query token takes token-level candidates from (``n_cells``): the choice.

    python benchmarks/cells.py

On 100k synthetic passages of each kind (benchmarks/realistic.py, seed 7: not the seed the scale
table reports) and the projected real queries: fidelity@10 to exhaustive MaxSim over the same
codes at the default widths, and with every candidate reranked (what stage 1 holds), p50 and
stage timings, for 0 (dense shortlist alone), 1, 2, 4, 8 and 16 cells. The indexes are kept in
benchmarks/.cache so reruns take minutes.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embeddings import CACHE  # noqa: E402
from realistic import fit, passages  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402

from colcade import EncodedQuery, LateIndex, PrecomputedEncoder  # noqa: E402
from colcade.encoders import pool  # noqa: E402

N, SEED, QUERIES, EXACT = 100_000, 7, 100, 40
VARIANTS = [{"n_cells": c} for c in (0, 1, 2, 4, 8, 16)] + [{"n_cells": c, "n_prefilter": 5000} for c in (1, 4, 16)]


def index_of(kind: str, queries: list[EncodedQuery]) -> tuple[LateIndex, list[list[str]]]:
    path = CACHE / f"exp-{kind}-{N}"
    if not (path / "manifest.json").exists():
        index = LateIndex.create(path, PrecomputedEncoder(dim=128, name=f"exp-{kind}"))
        done = 0
        for batch in passages(fit(), N, kind, seed=SEED, batch=50_000):
            index.add(ids=[str(i) for i in range(done, done + len(batch))], tokens=batch, show_progress=False)
            done += len(batch)
        index.compact()
        index.close()
    index = LateIndex.open(path)
    truth_path = CACHE / f"exp-{kind}-{N}-truth.json"
    if not truth_path.exists():
        truth_path.write_text(
            json.dumps([[h.id for h in index.search(q, k=10, exhaustive=True)] for q in queries[:EXACT]])
        )
    return index, json.loads(truth_path.read_text())


def measure(index: LateIndex, queries: list[EncodedQuery], truth: list[list[str]], widths: dict) -> list[str]:
    """At ``widths``: fidelity@10 to ``truth`` (the first queries'), p50 ms, and each stage's median ms."""
    for q in queries[:5]:
        index.search(q, k=10, **widths)
    times, stages, fid = [], [], []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        hits = index.search(q, k=10, **widths)
        times.append((time.perf_counter() - t0) * 1e3)
        stages.append([s.ms for s in hits.stats])
        if i < len(truth):
            fid.append(len({h.id for h in hits} & set(truth[i])) / 10)
    median = np.median(stages, axis=0)
    return [f"{np.mean(fid):.3f}", f"{np.median(times):.1f}", " / ".join(f"{x:.1f}" for x in median)]


def main() -> None:
    queries = [EncodedQuery(dense=pool(q), tokens=q) for q in fit().queries if len(q)][:QUERIES]
    rows = []
    for kind in ("text", "patches"):
        index, truth = index_of(kind, queries)
        for widths in VARIANTS:
            label = f"{widths['n_cells']}" + (", every candidate reranked" if "n_prefilter" in widths else "")
            rows.append([kind, label, *measure(index, queries, truth, widths)])
            print(rows[-1], file=sys.stderr, flush=True)
        index.close()
    body = (
        "## Choosing `n_cells` (token-level candidates) at 100k passages\n\n"
        + table(["kind", "n_cells", "fidelity@10 (same codes)", "p50 ms", "shortlist / prefilter / rerank ms"], rows)
        + f"\n\n{N:,} synthetic passages of each kind, seed {SEED} (the scale table uses another), d=128, "
        f"default widths; fidelity on the first {EXACT} of {QUERIES} projected real queries."
    )
    write_section("cells", body, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
