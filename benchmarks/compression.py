"""Compressed storage against float16: size, quality and fidelity on every shared collection.

Both indexes are built on disk from the default encoder's cached vectors (``embeddings.py``),
default token selection, d=384. Reported per collection:

- bytes a token: the token arrays alone (codes + residuals, or float16 + sign bits), and the
  whole index folder (dense vectors, codecs, SQLite with the texts' ids) over its tokens;
- nDCG@10 of exhaustive float MaxSim (float16 vectors: the reference), of the compressed
  index searched exhaustively and with its default cascade, and the gap to the reference;
- fidelity@10 of the compressed default cascade to exhaustive float MaxSim and to exhaustive
  MaxSim over the same (compressed) vectors, and with the full scan off (``n_shortlist=1000``);
- the same compressed index with its decoded vectors left at the length they decode to (the
  codec's ``unit`` flag off: the same stored codes, the decode before the flag existed);
- p50 latency of one query on one thread, default cascade, both layouts.

    python benchmarks/compression.py                 # every collection in ../shared/data
    python benchmarks/compression.py --quick         # cranfield, 50 queries
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embeddings import COLLECTIONS, load  # noqa: E402
from quality import run as run_k  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402

from colcade import EncodedQuery, LateIndex, PrecomputedEncoder  # noqa: E402
from colcade.app.eval import fidelity, ndcg  # noqa: E402
from colcade.encoders.default import MiniLMEncoder  # noqa: E402


def folder_bytes(path: Path, pattern: str = "*") -> int:
    return sum(f.stat().st_size for f in path.rglob(pattern) if f.is_file())


def run(index: LateIndex, queries: dict[str, EncodedQuery], **widths) -> dict[str, list[str]]:
    return run_k(index, queries, 10, **widths)


def p50_ms(index: LateIndex, queries: list[EncodedQuery]) -> float:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q, k=10)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def set_unit(index: LateIndex, unit: bool) -> None:
    """Decode this index's codes with or without putting vectors back on the unit sphere."""
    for codec in index._store._codecs.values():
        codec.unit = unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--collections", nargs="*", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    names = args.collections or (["cranfield"] if args.quick else COLLECTIONS)
    limit = 50 if args.quick else None
    encoder = MiniLMEncoder()
    keep = encoder._keep
    size_rows, quality_rows = [], []
    for name in names:
        started = time.time()
        collection, passages, queries_emb = load(name, encoder)
        tokens = passages.tokens(keep)
        q_tokens = queries_emb.tokens(keep)
        n = len(queries_emb.ids) if limit is None else min(limit, len(queries_emb.ids))
        queries = {queries_emb.ids[i]: EncodedQuery(dense=queries_emb.dense[i], tokens=q_tokens[i]) for i in range(n)}
        qrels = {q: collection.qrels[q] for q in queries if q in collection.qrels}
        n_tokens = sum(len(t) for t in tokens)
        with tempfile.TemporaryDirectory() as tmp:
            indexes, built = {}, {}
            for storage in ("float16", "compressed"):
                index = LateIndex.create(
                    Path(tmp) / storage, encoder=PrecomputedEncoder(dim=384, name="minilm-cached"), storage=storage
                )
                t0 = time.perf_counter()
                index.add(ids=passages.ids, tokens=tokens, dense=passages.dense)
                built[storage] = time.perf_counter() - t0
                indexes[storage] = index
                path = Path(tmp) / storage
                arrays = ("tokens.npy", "bits.npy") if storage == "float16" else ("codes.npy", "residuals.npy")
                token_bytes = sum(folder_bytes(path / "segments", a) for a in arrays)
                size_rows.append(
                    [
                        name,
                        storage,
                        f"{n_tokens:,}",
                        f"{token_bytes / n_tokens:.1f}",
                        f"{folder_bytes(path / 'segments', 'dense.npy') / n_tokens:.1f}",
                        f"{folder_bytes(path / 'codecs') / n_tokens:.1f}",
                        f"{folder_bytes(path) / n_tokens:.1f}",
                        f"{built[storage]:.1f}",
                    ]
                )
            exact = run(indexes["float16"], queries, exhaustive=True)
            exact_c = run(indexes["compressed"], queries, exhaustive=True)
            cascade_c = run(indexes["compressed"], queries)
            no_scan_c = run(indexes["compressed"], queries, n_shortlist=1000)
            no_scan_dense = run(indexes["compressed"], queries, n_shortlist=1000, n_cells=0)
            cascade_f = run(indexes["float16"], queries)
            set_unit(indexes["compressed"], False)
            exact_raw = run(indexes["compressed"], queries, exhaustive=True)
            cascade_raw = run(indexes["compressed"], queries)
            set_unit(indexes["compressed"], True)
            sample = list(queries.values())[:200]
            quality_rows.append(
                [
                    name,
                    f"{ndcg(exact, qrels):.4f}",
                    f"{ndcg(cascade_f, qrels):.4f}",
                    f"{ndcg(exact_c, qrels):.4f}",
                    f"{ndcg(cascade_c, qrels):.4f}",
                    f"{ndcg(cascade_c, qrels) - ndcg(exact, qrels):+.4f}",
                    f"{ndcg(exact_raw, qrels):.4f} / {ndcg(cascade_raw, qrels):.4f}",
                    f"{ndcg(cascade_raw, qrels) - ndcg(exact, qrels):+.4f}",
                    f"{fidelity(cascade_c, exact):.3f}",
                    f"{fidelity(cascade_c, exact_c):.3f}",
                    f"{fidelity(no_scan_dense, exact_c):.3f} / {fidelity(no_scan_c, exact_c):.3f}",
                    f"{p50_ms(indexes['float16'], sample):.1f} / {p50_ms(indexes['compressed'], sample):.1f}",
                ]
            )
            for index in indexes.values():
                index.close()
        print(quality_rows[-1], f"{time.time() - started:.0f} s", file=sys.stderr, flush=True)

    body = (
        "Default encoder (d=384), default token selection; both layouts built on disk from the same cached vectors. "
        "Bytes a token: the token arrays alone, the dense vectors, the codecs, and the whole index folder.\n\n"
        + table(
            ["collection", "storage", "tokens", "token arrays", "dense", "codecs", "whole folder", "build s"],
            size_rows,
        )
        + "\n\nnDCG@10 and fidelity@10 (share of the reference top-10 returned). *float exact*: exhaustive MaxSim over "
        "float16 vectors, the reference; *compressed*: the default layout; *unit off*: the same codes decoded without "
        "putting vectors back on the unit sphere (as before that step). Full scan off: `n_shortlist=1000`, stage 1 "
        "the dense shortlist alone (`n_cells=0`) / with token-level candidates (the default). "
        "p50: one query, one thread, default cascade.\n\n"
        + table(
            [
                "collection",
                "float exact",
                "float cascade",
                "compressed exhaustive",
                "compressed cascade",
                "gap to exact",
                "unit off: exhaustive / cascade",
                "unit off: gap",
                "fidelity to float exact",
                "fidelity to compressed exact",
                "same, full scan off: dense / + token candidates",
                "p50 ms float / compressed",
            ],
            quality_rows,
        )
    )
    write_section("compression", "### Compressed storage: size, quality, fidelity\n\n" + body, args.out)


if __name__ == "__main__":
    main()
