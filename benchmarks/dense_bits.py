"""How many bits the dense shortlist needs: the exact top-10 kept by the dense top-N at each width.

    python benchmarks/dense_bits.py

On the 100k synthetic passages benchmarks/cells.py builds (seed 7: not the seed the scale table
reports), both kinds: the share of the exhaustive MaxSim top-10 (over the same codes, cells.py's
first queries) that falls in the N passages best by dense inner product, with the dense vectors
as float16 (as that index stores them), in 8 bits (the previous layout) and in 4 bits: scaled to
the row's largest component, and with Max's optimal step for 16 levels (0.3352 of the row's rms:
a textbook constant, not fitted here; what ``dense_codes`` writes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cells  # noqa: E402
from realistic import fit  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402

from colcade import EncodedQuery  # noqa: E402
from colcade.encoders import pool  # noqa: E402
from colcade.engine import dense_codes  # noqa: E402

WIDTHS = (1024, 2048)


def _max_scaled_4bit(v: np.ndarray) -> np.ndarray:
    step = np.abs(v).max(axis=1, keepdims=True) / 7
    return np.clip(np.rint(v / step), -7, 7) * step


def main() -> None:
    queries = [EncodedQuery(dense=pool(q), tokens=q) for q in fit().queries if len(q)][: cells.QUERIES]
    rows = []
    for kind in ("text", "patches"):
        index, truth = cells.index_of(kind, queries)
        segments = index._store.state.segments
        assert len(segments) == 1, "cells.py builds one compacted segment"
        stored = np.asarray(segments[0].dense)
        position = {pid: i for i, pid in enumerate(index.ids())}  # one segment: insertion order
        index.close()
        exact = dense_codes.decode(stored)
        variants = {
            f"as stored ({stored.dtype})": exact,
            "8 bits (int8, scale a row)": dense_codes.decode(dense_codes._encode8(exact)),
            "4 bits, scaled to the largest component": _max_scaled_4bit(exact),
            "4 bits, Max's step (the default)": dense_codes.decode(dense_codes.encode(exact)),
        }
        for label, vectors in variants.items():
            held = {n: [] for n in WIDTHS}
            for q, top10 in zip(queries, truth):
                scores = vectors @ q.dense
                for n in WIDTHS:
                    best = set(np.argpartition(-scores, n)[:n].tolist())
                    held[n].append(np.mean([position[pid] in best for pid in top10]))
            rows.append([kind, label, *(f"{np.mean(held[n]):.3f}" for n in WIDTHS)])
            print(rows[-1], file=sys.stderr, flush=True)
    body = (
        "## How many bits the dense shortlist needs (100k passages, d=128)\n\n"
        + table(["kind", "dense vectors", *(f"exact top-10 in the dense top-{n:,}" for n in WIDTHS)], rows)
        + f"\n\n100,000 synthetic passages of each kind (benchmarks/cells.py, seed 7), {len(truth)} projected "
        "real queries; exact: exhaustive MaxSim over the index's codes. Bytes a passage at d=128: float16 256, "
        "8 bits 132, 4 bits 68."
    )
    write_section("dense-bits", body, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
