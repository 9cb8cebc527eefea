"""Where a million passages lose fidelity and time: the cascade's stages at other widths (a diagnosis).

    python benchmarks/million.py

One million synthetic text passages, the scale table's vectors (benchmarks/realistic.py, seed 1,
built as benchmarks/scale.py builds them) and the projected real queries: fidelity@10 to
exhaustive MaxSim over the same codes, p50 and the stages' medians, at the default widths and with
one width changed at a time. Nothing here picks a default (that would tune on the reported
data): it says which stage loses what. The index and the exhaustive top-10s are kept in
benchmarks/.cache (building takes ~20 minutes, the exhaustive answers ~6 more).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cells import measure  # noqa: E402
from embeddings import CACHE  # noqa: E402
from realistic import fit  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402
from scale import FIDELITY_QUERIES, LATENCY_QUERIES, build  # noqa: E402

from colcade import EncodedQuery, LateIndex  # noqa: E402
from colcade.encoders import pool  # noqa: E402

N = 1_000_000
VARIANTS: list[tuple[str, dict[str, int]]] = [
    ("defaults", {}),
    ("dense shortlist alone (n_cells 0)", {"n_cells": 0}),
    ("n_cells 4", {"n_cells": 4}),
    ("n_cells 8", {"n_cells": 8}),
    ("n_cells 32", {"n_cells": 32}),
    ("prefilter keeps 200 (the default before)", {"n_prefilter": 200}),
    ("dense shortlist of 4,096", {"n_shortlist": 4096}),
    ("prefilter keeps 800", {"n_prefilter": 800}),
    ("every candidate reranked (prefilter keeps 5,000)", {"n_prefilter": 5000}),
]


def main() -> None:
    path = CACHE / f"million-text-{N}"
    if not (path / "manifest.json").exists():
        build(path, N, "text")
    queries = [EncodedQuery(dense=pool(q), tokens=q) for q in fit().queries if len(q)][:LATENCY_QUERIES]
    index = LateIndex.open(path)
    truth_path = CACHE / f"million-text-{N}-truth.json"
    if not truth_path.exists():
        exact = [[h.id for h in index.search(q, k=10, exhaustive=True)] for q in queries[:FIDELITY_QUERIES]]
        truth_path.write_text(json.dumps(exact))
    truth = json.loads(truth_path.read_text())
    rows = []
    for label, widths in VARIANTS:
        rows.append([label, *measure(index, queries, truth, widths)])
        print(rows[-1], file=sys.stderr, flush=True)
    (seg, *_) = index._store.state.segments
    old = seg.dense.dtype == np.float16
    made = " Its dense rows are float16: it was built before dense vectors took 8 bits." if old else ""
    codec = seg.codec
    if codec is not None:
        levels = f", a two-level codebook under {len(codec.coarse)} coarse ones" if codec.coarse is not None else ""
        made += f" Its codec: {codec.k:,} centroids{levels}, {codec.nbits:g} bits a dimension."
    index.close()
    body = (
        "## Where a million passages lose fidelity and time\n\n"
        + table(["widths", "fidelity@10 (same codes)", "p50 ms", "shortlist / prefilter / rerank ms"], rows)
        + f"\n\n{N:,} synthetic text passages (the scale table's, seed 1), d=128, one thread; fidelity on the "
        f"first {len(truth)} of {LATENCY_QUERIES} projected real queries, to exhaustive MaxSim over the same "
        f"codes. A diagnosis, not a choice of defaults (this is the reported data).{made}"
    )
    write_section("million", body, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
