"""Where a million passages lose fidelity and time: the cascade's stages at other widths (a diagnosis).

    python benchmarks/million.py                   # text passages (section "million")
    python benchmarks/million.py --kind patches    # bags of unrelated patches ("million-patches")

One million synthetic passages of one kind, the scale table's vectors (benchmarks/realistic.py,
seed 1, built as benchmarks/scale.py builds them) and the projected real queries: fidelity@10 to
exhaustive MaxSim over the same codes, p50 and the stages' medians, at the default widths and with
one width changed at a time. Nothing here picks a default (that would tune on the reported
data): it says which stage loses what (the row that reranks every candidate bounds what stage 1
finds; the defaults' shortfall from it is the prefilter's). The index and the exhaustive top-10s
are kept in benchmarks/.cache (building takes ~15-20 minutes, the exhaustive answers ~6-10 more).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
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
# kind -> (its BENCHMARKS.md section, its passages as the title and the note name them)
KINDS = {
    "text": ("million", "passages", "text passages"),
    "patches": ("million-patches", "patch passages", "passages of unrelated patches (ColPali-like pages)"),
}
VARIANTS: list[tuple[str, dict[str, int]]] = [
    ("defaults", {}),
    ("dense shortlist alone (n_cells 0)", {"n_cells": 0}),
    ("n_cells 4", {"n_cells": 4}),
    ("n_cells 8", {"n_cells": 8}),
    ("n_cells 32", {"n_cells": 32}),
    ("prefilter keeps 200 (the default before)", {"n_prefilter": 200}),
    ("dense shortlist of 4,096", {"n_shortlist": 4096}),
    ("prefilter keeps 800", {"n_prefilter": 800}),
    ("every candidate reranked (prefilter keeps 6,144)", {"n_prefilter": 6144}),  # 2,048 dense + 4,096 token
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=sorted(KINDS), default="text")
    kind = parser.parse_args().kind
    path = CACHE / f"million-{kind}-{N}"
    if not (path / "manifest.json").exists():
        build(path, N, kind)
    queries = [EncodedQuery(dense=pool(q), tokens=q) for q in fit().queries if len(q)][:LATENCY_QUERIES]
    index = LateIndex.open(path)
    truth_path = CACHE / f"million-{kind}-{N}-truth.json"
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
    section, title, what = KINDS[kind]
    body = (
        f"## Where a million {title} lose fidelity and time\n\n"
        + table(["widths", "fidelity@10 (same codes)", "p50 ms", "shortlist / prefilter / rerank ms"], rows)
        + f"\n\n{N:,} synthetic {what} (the scale table's, seed 1), d=128, one thread; fidelity on the "
        f"first {len(truth)} of {LATENCY_QUERIES} projected real queries, to exhaustive MaxSim over the same "
        f"codes. A diagnosis, not a choice of defaults (this is the reported data).{made}"
    )
    write_section(section, body, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
