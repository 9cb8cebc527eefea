"""MaxSim reranking of candidates from any retriever (BM25, a vector store, a web search).

All candidates are encoded in one batched call and scored by the same compiled MaxSim kernel
as the index's final stage, so a reranked list and an index search agree on scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from colcade.encoders.base import Encoder, check_tokens
from colcade.engine.kernels import maxsim
from colcade.errors import InvalidInputError


def rerank(encoder: Encoder, query: str, documents: Sequence[str], k: int | None = None) -> list[tuple[int, float]]:
    """``(position in documents, MaxSim score)`` of the best ``k`` documents (all when None), best first.

    >>> from colcade.encoders import default_encoder                                # doctest: +SKIP
    >>> rerank(default_encoder(), "string instrument", ["a violin", "a solar panel"])  # doctest: +SKIP
    [(0, 2.41...), (1, 1.32...)]
    """
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k <= 0):
        raise InvalidInputError(f"k must be a positive integer, but got {k!r}")
    if not documents:
        return []
    q = check_tokens(encoder.encode_query(query).tokens, encoder.dim, "query token vectors")
    tokens = [
        check_tokens(t, encoder.dim, f"token vectors of document {i}")
        for i, t in enumerate(encoder.encode_documents(list(documents)).tokens)
    ]
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in tokens])]).astype(np.int64)
    scores = maxsim(q, np.concatenate(tokens).astype(np.float16), offsets)
    order = np.lexsort((np.arange(len(scores)), -scores))[: k or len(scores)]
    return [(int(i), float(scores[i])) for i in order]
