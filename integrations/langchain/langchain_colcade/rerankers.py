"""ColcadeReranker: MaxSim reranking of any retriever's documents, as a LangChain document compressor."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict

from colcade.encoders import Encoder, default_encoder
from colcade.rerank import rerank


class ColcadeReranker(BaseDocumentCompressor):
    """Rerank documents by late-interaction MaxSim; keeps the best ``top_n``.

    Writes ``metadata["relevance_score"]``; empty documents rank last with 0.0. Works on its
    own or inside langchain-classic's ``ContextualCompressionRetriever`` around BM25, a
    vector store, or any retriever.
    All candidates are encoded in one batch.

    Example:
        .. code-block:: python

            from langchain_colcade import ColcadeReranker

            reranker = ColcadeReranker(top_n=3)          # the embedded default encoder
            reranker.compress_documents(docs, "a question")
    """

    encoder: Any = None
    """A colcade encoder; None for the embedded default."""
    top_n: int = 3

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def _encoder(self) -> Encoder:
        return self.encoder if self.encoder is not None else default_encoder()

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        documents = list(documents)
        # An empty document has no tokens to score: it ranks last (score 0.0) instead of failing the batch.
        filled = [i for i, d in enumerate(documents) if d.page_content.strip()]
        ranked: list[tuple[int, float]] = []
        if filled:
            scored = rerank(self._encoder(), query, [documents[i].page_content for i in filled], k=len(filled))
            ranked = [(filled[j], score) for j, score in scored]
        ranked += [(i, 0.0) for i in range(len(documents)) if i not in set(filled)]
        ranked = ranked[: self.top_n]
        return [
            Document(
                id=documents[i].id,
                page_content=documents[i].page_content,
                metadata={**documents[i].metadata, "relevance_score": score},
            )
            for i, score in ranked
        ]

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)
