"""ColcadeVectorStore: a LangChain VectorStore whose search is colcade's late-interaction cascade."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from colcade import InvalidInputError, LateIndex
from colcade.encoders import Encoder


class ColcadeVectorStore(VectorStore):
    """A colcade index as a LangChain ``VectorStore``: ``from_texts``, ``add_texts`` /
    ``add_documents`` (an upsert by id), ``delete``, ``get_by_ids``, ``similarity_search``
    (with score, with relevance score), ``max_marginal_relevance_search``, ``as_retriever``,
    and their async forms.

    Ranking is late interaction with the index's own encoder (one vector per token), which
    LangChain's ``Embeddings`` (one vector per text) cannot provide, so none is taken: pass a
    colcade ``encoder`` (default: the embedded one). Scores: ``similarity_search_with_score``
    gives the MaxSim sum; relevance scores are the mean, over query tokens, of each token's
    best cosine with the passage's tokens, clipped to [0, 1] (1: every query token has an
    identical token in the passage), so one threshold works for short and long queries.
    ``filter`` takes colcade filters (``{"source": "a.pdf"}``, ``$in``, ``$gte``...).

    Example:
        .. code-block:: python

            from langchain_colcade import ColcadeVectorStore

            store = ColcadeVectorStore.from_texts(["colcade ranks by MaxSim", "BM25 counts words"])
            store.as_retriever(search_kwargs={"k": 1}).invoke("late interaction")
    """

    def __init__(self, index: Any = None, *, path: str | Path | None = None, encoder: Encoder | None = None) -> None:
        """Wrap ``index`` (a ``LateIndex`` or a ``colcade.qdrant.QdrantIndex``), or open (or create)
        the index at ``path``, or make one in memory."""
        if index is None:
            index = LateIndex.open_or_create(path, encoder) if path is not None else LateIndex.in_memory(encoder)
        self.index = index

    @property
    def embeddings(self) -> Embeddings | None:
        return None  # colcade's encoder is not a LangChain Embeddings (see the class docstring)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        path: str | Path | None = None,
        encoder: Encoder | None = None,
        **kwargs: Any,
    ) -> ColcadeVectorStore:
        """A store holding ``texts`` (in memory, or in the index folder at ``path``)."""
        if embedding is not None:
            raise InvalidInputError(
                "ColcadeVectorStore ranks with a late-interaction encoder (one vector per token), not a "
                "LangChain Embeddings: leave embedding=None and pass encoder= (default: the embedded one)"
            )
        store = cls(path=path, encoder=encoder)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    # ------------------------------------------------------------------ updates
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Add texts, replacing any passage with the same id; returns their ids."""
        texts = list(texts)
        given = list(ids) if ids is not None else [None] * len(texts)
        if len(given) != len(texts):
            raise InvalidInputError(f"got {len(given)} ids for {len(texts)} texts")
        ids_out = [i or uuid.uuid4().hex for i in given]
        metas = [dict(m) for m in metadatas] if metadatas is not None else [{} for _ in texts]
        if not texts:
            return []
        return self.index.upsert(texts, ids=ids_out, metadatas=metas)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete passages by id (ids not in the store are skipped); True when done."""
        if ids is None:
            raise InvalidInputError("delete needs the ids to delete")
        self.index.delete(list(ids), missing_ok=True)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents of these ids that the store holds (missing ids are left out)."""
        rows = self.index.get(list(ids), missing_ok=True) if ids else []
        return [Document(id=r["id"], page_content=r["text"], metadata=r["metadata"]) for r in rows]

    # ------------------------------------------------------------------ search
    def _hits(self, query: str, k: int, filter: dict[str, Any] | None, **kwargs: Any) -> list[Any]:
        if not len(self.index):
            return []
        return list(self.index.search(query, k=k, filter=filter, **kwargs))

    def similarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents with their score, higher is better: fused with BM25 by default (in [0, 1]), the
        MaxSim sum over query tokens with ``hybrid=False``."""
        return [(_document(h), float(h.score)) for h in self._hits(query, k, filter, **kwargs)]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        filter = kwargs.pop("filter", None)
        return [
            (_document(h), float(min(1.0, max(0.0, h.normalized_score))))
            for h in self._hits(query, k, filter, **kwargs)
        ]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """The ``fetch_k`` best by MaxSim, then ``k`` of them picked for relevance and diversity
        over their pooled (dense) vectors, re-encoded by the index's encoder."""
        hits = self._hits(query, fetch_k, filter, **kwargs)
        if not hits:
            return []
        encoder = self.index.encoder
        dense = np.asarray(encoder.encode_documents([h.text for h in hits]).dense, np.float32)
        query_dense = np.asarray(encoder.encode_query(query).dense, np.float32)
        chosen = maximal_marginal_relevance(query_dense, list(dense), lambda_mult=lambda_mult, k=min(k, len(hits)))
        return [_document(hits[i]) for i in chosen]


def _document(hit: Any) -> Document:
    return Document(id=hit.id, page_content=hit.text, metadata=dict(hit.metadata))
