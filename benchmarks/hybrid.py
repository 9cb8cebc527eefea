"""Hybrid search: MaxSim fused with the index's own BM25 (SQLite FTS5), and the default weight.

The weight of the convex fusion is chosen on SciFact's *train* queries (the only shared
collection with a train split), then every variant is reported unchanged on every collection's
test queries: BM25 alone (the lexical index's order), MaxSim alone (the default cascade),
convex fusion at each weight, and reciprocal-rank fusion; the dense vector alone (FAISS, exact)
for reference. Default encoder, compressed storage (the default), cached vectors
(``embeddings.py``), passages' texts from the collections. nDCG@10 from k=10 searches, as users
search (fusion normalizes over the candidates a k=10 search reranks); Recall@100 from k=100
searches of the same variant, on the first ``RECALL_QUERIES`` queries of each collection.

    python benchmarks/hybrid.py
    python benchmarks/hybrid.py --quick      # cranfield only, 50 queries, train split skipped
    python benchmarks/hybrid.py --latency    # p50 of a text query, hybrid against MaxSim alone
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embeddings import COLLECTIONS, DATA, load  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402

from colcade import EncodedQuery, LateIndex, PrecomputedEncoder  # noqa: E402
from colcade.app.eval import load_beir, ndcg, recall  # noqa: E402
from colcade.encoders.default import MiniLMEncoder  # noqa: E402
from colcade.engine.fusion import DEFAULT_WEIGHT  # noqa: E402

WEIGHTS = [0.1, 0.2, 0.3, 0.4, 0.5]
RECALL_QUERIES = 200  # k=100 hybrid searches cost ~10x a k=10 one: a sample keeps the run under an hour
VARIANTS: dict[str, object] = {"BM25 alone": 1.0, "MaxSim alone": False, **{f"convex {w}": w for w in WEIGHTS}}
VARIANTS["RRF"] = "rrf"


def build(name: str, encoder: MiniLMEncoder, folder: Path) -> LateIndex:
    collection, passages, _ = load(name, encoder)
    ids, texts = collection.passages()
    text_of = dict(zip(ids, texts))
    index = LateIndex.create(folder / name, encoder=PrecomputedEncoder(dim=384, name="minilm-cached"))
    index.add(
        [text_of[i] for i in passages.ids],
        ids=passages.ids,
        tokens=passages.tokens(encoder._keep),
        dense=passages.dense,
        show_progress=False,
    )
    return index


def runs(index: LateIndex, queries: dict[str, tuple[EncodedQuery, str]], k: int = 10) -> dict[str, dict]:
    out = {}
    for variant, hybrid in VARIANTS.items():
        out[variant] = {
            qid: [h.id for h in index.search(q, k=k, hybrid=hybrid, text=text)] for qid, (q, text) in queries.items()
        }
    return out


def dense_run(passages, queries: dict[str, tuple[EncodedQuery, str]], k: int) -> dict[str, list[str]]:
    flat = faiss.IndexFlatIP(passages.dense.shape[1])
    flat.add(passages.dense)
    _, found = flat.search(np.stack([q.dense for q, _ in queries.values()]), k)
    return {qid: [passages.ids[j] for j in row if j >= 0] for qid, row in zip(queries, found)}


def latency(encoder: MiniLMEncoder, out: Path) -> None:
    """p50/p95 of text queries (encoding included), hybrid against MaxSim alone, interleaved."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in COLLECTIONS:
            collection, _, _ = load(name, encoder)
            index = build(name, encoder, Path(tmp))
            index._encoder = encoder  # text queries: the real encoder on the cached vectors' index
            times: dict[bool, list[float]] = {True: [], False: []}
            for text in list(collection.queries.values())[:200]:
                for hybrid in (True, False):
                    t0 = time.perf_counter()
                    index.search(text, k=10, hybrid=hybrid)
                    times[hybrid].append((time.perf_counter() - t0) * 1e3)
            h, m = (np.array(times[True]), np.array(times[False]))
            rows.append(
                [
                    name,
                    f"{np.median(m):.1f} / {np.percentile(m, 95):.1f}",
                    f"{np.median(h):.1f} / {np.percentile(h, 95):.1f}",
                    f"{np.median(h) / np.median(m):.2f}x",
                ]
            )
            print(rows[-1], flush=True)
            index.close()
    body = (
        "### Hybrid search latency\n\n200 text queries a collection (query encoding included), one thread "
        "a query, default widths, compressed storage; hybrid and MaxSim alone interleaved.\n\n"
        + table(["collection", "MaxSim alone p50 / p95 ms", "hybrid p50 / p95 ms", "hybrid / MaxSim (p50)"], rows)
    )
    write_section("hybrid-latency", body, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    encoder = MiniLMEncoder()
    if args.latency:
        return latency(encoder, args.out)
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.quick:  # the choice: SciFact's train queries
            index = build("scifact", encoder, Path(tmp) / "train")
            train = load_beir(DATA / "scifact", split="train")
            queries = {q: (encoder.encode_query(t), t) for q, t in train.queries.items()}
            found = runs(index, queries)
            found["dense alone"] = dense_run(load("scifact", encoder)[1], queries, 10)
            rows = [[v, f"{ndcg(r, train.qrels):.4f}"] for v, r in found.items()]
            index.close()
            sections.append(
                f"**Choosing the weight: SciFact train, {len(queries)} queries** (the default, "
                f"`hybrid=True`, is {DEFAULT_WEIGHT})\n\n" + table(["variant", "nDCG@10"], rows)
            )
            print(sections[-1], flush=True)
        rows, sizes = [], []
        for name in ["cranfield"] if args.quick else COLLECTIONS:
            collection, passages, queries_emb = load(name, encoder)
            index = build(name, encoder, Path(tmp) / "test")
            tokens = queries_emb.tokens(encoder._keep)
            n = 50 if args.quick else len(queries_emb.ids)
            queries = {
                queries_emb.ids[i]: (
                    EncodedQuery(dense=queries_emb.dense[i], tokens=tokens[i]),
                    collection.queries[queries_emb.ids[i]],
                )
                for i in range(n)
            }
            qrels = {q: collection.qrels[q] for q in queries}
            found = runs(index, queries)
            found["dense alone"] = dense_run(passages, queries, 10)
            sample = dict(list(queries.items())[:RECALL_QUERIES])
            deep = runs(index, sample, k=100)
            deep["dense alone"] = dense_run(passages, sample, 100)
            sample_qrels = {q: collection.qrels[q] for q in sample}
            with index._store.reading() as (_, db):  # the lexical index's own tables, on disk
                size = db.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'lexical%'").fetchone()[0]
            sizes.append([name, f"{size / 2**20:.1f} MiB", f"{size / len(collection.corpus):,.0f} B"])
            for variant, run in found.items():
                rows.append([name, variant, f"{ndcg(run, qrels):.4f}", f"{recall(deep[variant], sample_qrels):.4f}"])
                print(rows[-1], flush=True)
            index.close()
        header = ["collection", "variant", "nDCG@10", f"Recall@100 (first {RECALL_QUERIES} queries)"]
        sections.append("**Test queries, every collection**\n\n" + table(header, rows))
        sections.append(
            "**The lexical index on disk** (FTS5 tables in docs.sqlite)\n\n"
            + table(["collection", "lexical index", "a passage"], sizes)
        )
    body = "### Hybrid search: MaxSim fused with BM25 (issue 10)\n\n" + "\n\n".join(sections)
    write_section("hybrid", body, args.out)


if __name__ == "__main__":
    main()
