"""The Qdrant backend's cascade on Qdrant's own engine, beside LateIndex, on real text.

    python benchmarks/qdrant.py           # every shared collection, first 200 test queries
    python benchmarks/qdrant.py --quick   # cranfield, 30 queries

No Qdrant server runs here; qdrant-edge (Qdrant's engine in the process: real binary
quantization, HNSW, MaxSim multivectors) gets the collection config and the query that
``QdrantIndex`` sends a server (``colcade.qdrant.requests``), translated to its API object by
object. Local mode (``qdrant-client``'s ``:memory:``) is exact and is checked in the tests, not here.

Vectors: the default encoder's (every token, d=384), float16 as stored. Fidelity@10 is the share
of the exhaustive float MaxSim top-10 returned; nDCG@10 against the collection's qrels. Widths:
colcade's defaults above its full-scan size (shortlist 2,048, prefilter 100) and a narrow pair
(256, 40) where the stages matter at these corpus sizes. p50 is one query at a time, one thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embeddings import COLLECTIONS, load  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402

from colcade import EncodedQuery, LateIndex, PrecomputedEncoder  # noqa: E402
from colcade.app.eval import fidelity, ndcg  # noqa: E402
from colcade.encoders import describe  # noqa: E402
from colcade.encoders.default import MiniLMEncoder  # noqa: E402
from colcade.qdrant import requests  # noqa: E402

WIDTHS = {"default (2,048 / 100)": (2048, 100), "narrow (256 / 40)": (256, 40)}


def edge_config(info: dict):
    """``requests.vectors_config`` as qdrant-edge's config (the same fields, its classes)."""
    import qdrant_edge as qe

    rest = requests.vectors_config(info["dim"], info["dense_dim"])
    tokens = rest[requests.TOKENS]
    return qe.EdgeConfig(
        vectors={
            requests.DENSE: qe.EdgeVectorParams(size=rest[requests.DENSE].size, distance=qe.Distance.Dot),
            requests.TOKENS: qe.EdgeVectorParams(
                size=tokens.size,
                distance=qe.Distance.Dot,
                multivector_config=qe.MultiVectorConfig(comparator=qe.MultiVectorComparator.MaxSim),
                datatype=qe.VectorStorageDatatype.Float16,
                on_disk=tokens.on_disk,
                hnsw_config=qe.HnswIndexConfig(m=tokens.hnsw_config.m, ef_construct=100, full_scan_threshold=10_000),
                quantization_config=qe.BinaryQuantizationConfig(
                    always_ram=tokens.quantization_config.binary.always_ram
                ),
            ),
        },
        max_search_threads=1,
    )


def edge_params(params):
    import qdrant_edge as qe

    if params is None:
        return None
    q = params.quantization
    quant = qe.QuantizationSearchParams(ignore=bool(q.ignore), rescore=q.rescore) if q is not None else None
    return qe.SearchParams(exact=bool(params.exact), quantization=quant)


def edge_prefetch(p):
    import qdrant_edge as qe

    inner = [edge_prefetch(p.prefetch)] if p.prefetch is not None else None
    return qe.Prefetch(
        limit=p.limit, query=qe.Query.Nearest(p.query, using=p.using), prefetches=inner, params=edge_params(p.params)
    )


def edge_request(r):
    """A ``QueryRequest`` of ``requests.query`` as qdrant-edge's (filters are not benchmarked)."""
    import qdrant_edge as qe

    return qe.QueryRequest(
        limit=r.limit,
        query=qe.Query.Nearest(r.query, using=r.using),
        prefetches=[edge_prefetch(r.prefetch)] if r.prefetch is not None else None,
        params=edge_params(r.params),
        with_payload=False,
    )


def build_edge(folder: Path, info: dict, tokens: list[np.ndarray], dense: np.ndarray):
    import qdrant_edge as qe

    shard = qe.EdgeShard.create(str(folder), edge_config(info))
    for start in range(0, len(tokens), 500):
        points = [
            qe.Point(i, {requests.DENSE: dense[i].tolist(), requests.TOKENS: tokens[i].tolist()})
            for i in range(start, min(start + 500, len(tokens)))
        ]
        shard.update(qe.UpdateOperation.upsert_points(points))
    shard.optimize()
    return shard


def timed_run(search, queries: list[EncodedQuery], qids: list[str]) -> tuple[dict[str, list[str]], float]:
    run, times = {}, []
    for qid, q in zip(qids, queries):
        t0 = time.perf_counter()
        run[qid] = search(q)
        times.append((time.perf_counter() - t0) * 1e3)
    return run, float(np.median(times))


def measure(name: str, n_queries: int) -> list[list[str]]:
    encoder = MiniLMEncoder()
    collection, passages, queries = load(name, encoder)
    tokens = [t.astype(np.float16).astype(np.float32) for t in passages.tokens(encoder._keep)]
    qids = queries.ids[:n_queries]
    encoded = [
        EncodedQuery(dense=queries.dense[i], tokens=t) for i, t in enumerate(queries.tokens(encoder._keep)[:n_queries])
    ]
    pid = passages.ids
    fake = PrecomputedEncoder(dim=384, name="minilm-cached")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exact_index = LateIndex.create(Path(tmp) / "f16", fake, storage="float16")
        exact_index.add(ids=pid, tokens=tokens, dense=passages.dense)
        packed = LateIndex.create(Path(tmp) / "compressed", fake)
        packed.add(ids=pid, tokens=tokens, dense=passages.dense)
        packed.compact()
        exhaustive, _ = timed_run(lambda q: [h.id for h in exact_index.search(q, k=10, exhaustive=True)], encoded, qids)
        shard = build_edge(Path(tmp) / "edge", describe(fake), tokens, passages.dense)

        def edge(widths: requests.Widths):
            def search(q: EncodedQuery) -> list[str]:
                return [pid[int(p.id)] for p in shard.query(edge_request(requests.query(q, 10, widths, None)))]

            return search

        qrels = {q: collection.qrels[q] for q in qids if q in collection.qrels}

        def row(widths: str, system: str, search) -> list[str]:
            run, p50 = timed_run(search, encoded, qids)
            return [name, widths, system, f"{fidelity(run, exhaustive):.3f}", f"{ndcg(run, qrels):.4f}", f"{p50:.1f}"]

        def late(index: LateIndex, s: int, p: int):
            return lambda q: [h.id for h in index.search(q, k=10, n_shortlist=s, n_prefilter=p)]

        rows.append(row("exhaustive", "qdrant-edge", edge(requests.Widths(0, 0, exhaustive=True))))
        for label, (s, p) in WIDTHS.items():
            rows.append(row(label, "LateIndex float16", late(exact_index, s, p)))
            rows.append(row(label, "LateIndex compressed", late(packed, s, p)))
            rows.append(row(label, "qdrant-edge", edge(requests.Widths.of(10, s, p, False))))
        shard.close()
        exact_index.close()
        packed.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    rows = []
    for name in ["cranfield"] if args.quick else COLLECTIONS:
        rows += measure(name, 30 if args.quick else 200)
        print(table(["collection", "widths", "system", "fidelity@10", "nDCG@10", "p50 ms"], rows[-7:]), flush=True)
    body = (
        "## Qdrant backend: colcade's cascade on Qdrant's engine\n\n"
        "`QdrantIndex`'s collection config and query (dense HNSW prefetch -> MaxSim over binary-quantized "
        "tokens, no rescoring -> exact MaxSim over float16 originals) run on qdrant-edge, Qdrant's engine "
        "in the process, beside LateIndex with the same stage widths. Default encoder (d=384, every token), "
        "first 200 test queries; fidelity@10 to exhaustive float MaxSim; p50 one query, one thread.\n\n"
        + table(["collection", "widths", "system", "fidelity@10", "nDCG@10", "p50 ms"], rows)
    )
    write_section("qdrant", body, args.out)


if __name__ == "__main__":
    main()
