"""Index your own multi-vector embeddings (ColPali page vectors, any ColBERT model) with colcade.

    python examples/own_vectors.py

Stands in for a model with vectors made on the spot, so it runs anywhere, offline: 2,000
"pages" of 40-160 token vectors (128 dims) whose tokens share topics, as real ones do.
With ColPali you would pass `model(images)` outputs as `tokens=` and `model(query)` as the query.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from colcade import LateIndex, PrecomputedEncoder

rng = np.random.default_rng(7)
DIM, TOPICS = 128, ["invoices", "contracts", "manuals", "reports"]
centres = {t: rng.standard_normal(DIM) for t in TOPICS}


def page_vectors(topic: str) -> np.ndarray:
    """What a multi-vector model would return for one page: [tokens, 128], rows L2-normalized."""
    v = rng.standard_normal((int(rng.integers(40, 160)), DIM)) + 1.5 * centres[topic]
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    topics = [TOPICS[i % 4] for i in range(2_000)]
    pages = [page_vectors(t) for t in topics]
    encoder = PrecomputedEncoder(dim=DIM, name="colpali-like-128")

    with tempfile.TemporaryDirectory() as tmp:
        index = LateIndex.create(Path(tmp) / "pages", encoder=encoder)
        index.add(
            texts=[f"{t} page {i}" for i, t in enumerate(topics)],  # stored with the hit; not encoded
            ids=[f"page-{i}" for i in range(len(pages))],
            metadatas=[{"topic": t, "page": i} for i, t in enumerate(topics)],
            tokens=pages,
        )
        print(index, "\n")

        # A query made of some tokens of page 42 plus 10% noise: page 42 should come first.
        query_tokens = pages[42][:20] + 0.1 / np.sqrt(DIM) * rng.standard_normal((20, DIM)).astype(np.float32)
        query = encoder.query(query_tokens / np.linalg.norm(query_tokens, axis=1, keepdims=True))
        hits = index.search(query, k=3)
        for hit in hits:
            print(f"{hit.id:>10}  score {hit.score:7.3f}  normalized {hit.normalized_score:.3f}  {hit.metadata}")
        print(
            "\nstages:",
            ", ".join(f"{s.name} {s.candidates_in}->{s.candidates_out} in {s.ms:.2f} ms" for s in hits.stats),
        )

        # Filters run before ranking; the same query restricted to contracts:
        print("\nonly contracts:", [h.id for h in index.search(query, k=3, filter={"topic": "contracts"})])

        # Updates are visible at once and survive a reopen.
        index.delete(["page-42"])
        index.close()
        reopened = LateIndex.open(Path(tmp) / "pages")
        print("after deleting page-42 and reopening:", [h.id for h in reopened.search(query, k=3)])
        reopened.close()


if __name__ == "__main__":
    main()
