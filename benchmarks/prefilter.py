"""The compressed prefilter's width against query length: fixed widths and the default rule.

    python benchmarks/prefilter.py

A compressed index keeps ``max(200, 20k)`` passages by centroid interaction, chosen on SciFact's
train queries (median 21 tokens). A shorter query's centroid ranking is noisier and its rerank
cheaper, so by default it keeps as many as its rerank scores in the same time
(``cascade.RERANK_COST``, measured on SciFact's train corpus: 295 at <= 8 tokens, 250 at 9-16).
Beside it, the rule it replaced (``200 x 21 / n``, at most 8x: the same dot products, which
ignored that decoding a passage costs the same for any query). Per collection (SciFact train:
the split both rules come from; then every test collection, as reported): fidelity@10 to
exhaustive MaxSim over the same codes, over all queries and over the short ones (<= 10 tokens),
with the full scan on (the default below 8,192 passages) and off (``n_shortlist=1000``), the
rerank's mean width and its median time (one query at a time, one thread, every variant in one
run: compare within a collection). At most 300 queries a collection.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embeddings import COLLECTIONS, load  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402

from colcade import EncodedQuery, LateIndex, PrecomputedEncoder  # noqa: E402
from colcade.encoders.default import MiniLMEncoder  # noqa: E402
from colcade.engine import kernels  # noqa: E402
from colcade.engine.cascade import RERANK_COST  # noqa: E402
from colcade.engine.codec import ResidualCodec  # noqa: E402

SHORT = 10  # query tokens
MAX_QUERIES = 300
VARIANTS = ["keeps 200", "keeps 400", "200 x 21 / n (before)", "default: same rerank time"]


def width(variant: str, n_tokens: int) -> int | None:
    """The prefilter width a variant asks for (None: the default's own)."""
    if variant.startswith("keeps"):
        return int(variant.split()[1])
    if variant.startswith("200 x 21"):
        return min(-(-200 * 21 // min(21, n_tokens)), 1600)
    return None


def rerank_cost(encoder: MiniLMEncoder) -> list[list[str]]:
    """The compressed kernel's time by query length (where ``RERANK_COST`` comes from): 1,000
    passages x 120 of SciFact's corpus tokens, one thread, queries of SciFact's train tokens."""
    _, passages, queries = load("scifact", encoder, split="train")
    v = np.asarray(passages.vectors[:120_000], np.float32)
    codec = ResidualCodec.train(v[:60_000])
    codes, packed = codec.encode(v)
    offsets, cand = np.arange(0, len(v) + 1, 120, dtype=np.int64), np.arange(len(v) // 120, dtype=np.int64)
    q_all = np.concatenate(queries.tokens(encoder._keep)[:50]).astype(np.float32)
    times: dict[int, list[float]] = {n: [] for n in range(1, 33)}
    for _ in range(5):  # rounds over every length: drift on a shared machine hits them alike
        for n in times:
            q = np.ascontiguousarray(q_all[:n])
            t0 = time.perf_counter()
            kernels.maxsim_residual(q, codec, codes, packed, offsets, cand)
            times[n].append((time.perf_counter() - t0) * 1e3)
    brackets = [(1, 8), (9, 16), (17, 32)]
    ms = [float(np.median([t for n in range(lo, hi + 1) for t in times[n]])) for lo, hi in brackets]
    used = [f"{c:.2f}" for _, c in RERANK_COST] + ["1 (the base)"]
    return [[f"{lo}-{hi}", f"{m:.1f}", f"{m / ms[-1]:.2f}", u] for (lo, hi), m, u in zip(brackets, ms, used)]


def main() -> None:
    encoder = MiniLMEncoder()
    keep = encoder._keep
    cost_rows = rerank_cost(encoder)
    print(cost_rows, file=sys.stderr, flush=True)
    rows = []
    for name, split in [("scifact", "train")] + [(c, "test") for c in COLLECTIONS]:
        _, passages, queries_emb = load(name, encoder, split=split)
        q_tokens = queries_emb.tokens(keep)
        n = min(MAX_QUERIES, len(queries_emb.ids))
        queries = [EncodedQuery(dense=queries_emb.dense[i], tokens=q_tokens[i]) for i in range(n)]
        lengths = np.array([len(q.tokens) for q in queries])
        short = lengths <= SHORT
        with tempfile.TemporaryDirectory() as tmp:
            index = LateIndex.create(Path(tmp) / "i", encoder=PrecomputedEncoder(dim=384, name="minilm-cached"))
            index.add(ids=passages.ids, tokens=passages.tokens(keep), dense=passages.dense)
            exact = [[h.id for h in hits] for hits in index.search_batch(queries, k=10, exhaustive=True, n_threads=2)]
            for scan, extra in (("on", {}), ("off", {"n_shortlist": 1000})):
                for label in VARIANTS:
                    found, kept = [], []
                    for q in queries:  # one at a time: the latency a user sees
                        w = width(label, len(q.tokens))
                        found.append(index.search(q, k=10, **extra, **({"n_prefilter": w} if w else {})))
                        kept.append(next(s.candidates_out for s in found[-1].stats if s.name == "prefilter"))
                    held = np.array([len({h.id for h in f} & set(e)) / max(1, len(e)) for f, e in zip(found, exact)])
                    rerank_ms = [next(s.ms for s in f.stats if s.name == "rerank") for f in found]
                    rows.append(
                        [
                            f"{name} {split}",
                            f"{np.median(lengths):.0f} ({short.mean():.0%})",
                            scan,
                            label,
                            f"{held.mean():.4f}",
                            f"{held[short].mean():.4f}" if short.any() else "-",
                            f"{np.mean(kept):,.0f}",
                            f"{np.median(rerank_ms):.2f}",
                        ]
                    )
                    print(rows[-1], file=sys.stderr, flush=True)
            index.close()
    body = (
        "## The compressed prefilter's width and query length\n\n"
        + table(["query tokens", "rerank ms (1,000 passages x 120 tokens)", "relative", "RERANK_COST"], cost_rows)
        + "\n\nThe compressed kernel's time by query length, one thread, SciFact's corpus tokens and train "
        "queries: the default rule keeps `200 / RERANK_COST` passages (the last column, chosen in an earlier run).\n\n"
        + table(
            [
                "queries",
                "median tokens (share <= 10)",
                "full scan",
                "prefilter",
                "fidelity@10 (same codes)",
                "short queries",
                "passages reranked (mean)",
                "rerank ms (median)",
            ],
            rows,
        )
        + "\n\nDefault encoder (d=384), compressed index, default token selection; fidelity@10 to exhaustive "
        "MaxSim over the same codes; *full scan off*: `n_shortlist=1000` with token-level candidates. The rule "
        "comes from SciFact's train queries and corpus (the first rows); the others are reported, not chosen on. "
        "Rerank ms: one query at a time, one thread."
    )
    write_section("prefilter", body, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
