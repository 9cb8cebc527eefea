"""The compressed prefilter's width against query length: fixed widths and the default rule.

    python benchmarks/prefilter.py

A compressed index keeps ``max(200, 20k)`` passages by centroid interaction, chosen on SciFact's
train queries (median 21 tokens); by default a query of fewer tokens keeps ``21 / n`` times as
many, for the same rerank work (``cascade.RERANK_TOKENS``). Per collection (SciFact train: the
split the rule comes from; then every test collection, as reported): fidelity@10 to exhaustive
MaxSim over the same codes, over all queries and over the short ones (<= 10 tokens), with the
full scan on (the default below 8,192 passages) and off (``n_shortlist=1000``), and the rerank's
work (mean passages reranked x query tokens) and its median time (two threads, every variant in
one run: compare within a collection). Decoding a passage costs the same for any query, so a
short query's wider rerank takes longer than its work says. At most 300 queries a collection.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embeddings import COLLECTIONS, load  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402

from colcade import EncodedQuery, LateIndex, PrecomputedEncoder  # noqa: E402
from colcade.encoders.default import MiniLMEncoder  # noqa: E402
from colcade.engine.cascade import RERANK_TOKENS  # noqa: E402

SHORT = 10  # query tokens
MAX_QUERIES = 300
VARIANTS: list[tuple[str, int | None]] = [
    ("keeps 200", 200),
    ("keeps 400", 400),
    (f"default: 200 x {RERANK_TOKENS} / n", None),
]


def main() -> None:
    encoder = MiniLMEncoder()
    keep = encoder._keep
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
                for label, width in VARIANTS:
                    widths = dict(extra, **({"n_prefilter": width} if width else {}))
                    found = index.search_batch(queries, k=10, n_threads=2, **widths)
                    held = np.array([len({h.id for h in f} & set(e)) / max(1, len(e)) for f, e in zip(found, exact)])
                    rerank_ms = [next(s.ms for s in f.stats if s.name == "rerank") for f in found]
                    kept = np.array([w or 200 * max(RERANK_TOKENS, n) / n for w, n in [(width, n) for n in lengths]])
                    rows.append(
                        [
                            f"{name} {split}",
                            f"{np.median(lengths):.0f} ({short.mean():.0%})",
                            scan,
                            label,
                            f"{held.mean():.4f}",
                            f"{held[short].mean():.4f}" if short.any() else "-",
                            f"{np.mean(np.minimum(kept, len(passages.ids)) * lengths):,.0f}",
                            f"{np.median(rerank_ms):.2f}",
                        ]
                    )
                    print(rows[-1], file=sys.stderr, flush=True)
            index.close()
    body = (
        "## The compressed prefilter's width and query length\n\n"
        + table(
            [
                "queries",
                "median tokens (share <= 10)",
                "full scan",
                "prefilter",
                "fidelity@10 (same codes)",
                "short queries",
                "rerank work (passages x tokens)",
                "rerank ms (median)",
            ],
            rows,
        )
        + "\n\nDefault encoder (d=384), compressed index, default token selection; fidelity@10 to exhaustive "
        "MaxSim over the same codes; *full scan off*: `n_shortlist=1000` with token-level candidates. The rule "
        "comes from SciFact's train queries (the first rows); the others are reported, not chosen on."
    )
    write_section("prefilter", body, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
