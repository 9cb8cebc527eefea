"""ColcadeRetriever: LangChain's BaseRetriever over a colcade index (or anything with its ``search``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from colcade import LateIndex
from colcade.encoders import Encoder


class ColcadeRetriever(BaseRetriever):
    """Late-interaction retrieval for LangChain: a colcade ``LateIndex`` as a retriever.

    ``k``, ``filter`` and the stage widths (``search_kwargs``: ``n_shortlist``,
    ``n_prefilter``, ``exhaustive``) are fields, and can also be given per call:
    ``retriever.invoke("question", k=3, filter={"source": "a.pdf"})``. Documents carry the
    passage id and ``metadata["score"]`` (the MaxSim score).

    Example:
        .. code-block:: python

            from langchain_colcade import ColcadeRetriever

            retriever = ColcadeRetriever.from_texts(["colcade ranks by MaxSim", "BM25 counts words"])
            retriever.invoke("late interaction", k=1)
    """

    index: Any
    """A ``colcade.LateIndex``, or any object with the same ``search`` (e.g. the Qdrant backend)."""
    k: int = 4
    filter: dict[str, Any] | None = None
    search_kwargs: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        *,
        encoder: Encoder | None = None,
        path: str | Path | None = None,
        **kwargs: Any,
    ) -> ColcadeRetriever:
        """Index ``texts`` (in memory, or in a new index folder at ``path``) and wrap the index."""
        return cls(
            index=LateIndex.from_texts(texts, metadatas=metadatas, ids=ids, encoder=encoder, path=path), **kwargs
        )

    @classmethod
    def from_documents(cls, documents: Sequence[Document], **kwargs: Any) -> ColcadeRetriever:
        """Index LangChain ``Document``s (their ``id`` is kept where set)."""
        ids = [d.id for d in documents]
        return cls.from_texts(
            [d.page_content for d in documents],
            [dict(d.metadata) for d in documents],
            ids=ids if all(ids) else None,
            **kwargs,
        )

    @classmethod
    def from_index(
        cls, index: LateIndex | str | Path, encoder: Encoder | None = None, **kwargs: Any
    ) -> ColcadeRetriever:
        """Wrap an index, or open the one saved at a path."""
        if isinstance(index, (str, Path)):
            index = LateIndex.open(index, encoder=encoder)
        return cls(index=index, **kwargs)

    # ------------------------------------------------------------------ retrieval
    def _search(
        self, query: str, k: int | None, filter: dict[str, Any] | None, kwargs: dict[str, Any]
    ) -> list[Document]:
        widths = {**self.search_kwargs, **kwargs}
        hits = self.index.search(query, k=k or self.k, filter=filter if filter is not None else self.filter, **widths)
        return [
            Document(id=hit.id, page_content=hit.text, metadata={**hit.metadata, "score": hit.score}) for hit in hits
        ]

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return self._search(query, k, filter, kwargs)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        # The kernels release the GIL: a worker thread keeps the event loop free meanwhile.
        return await asyncio.to_thread(self._search, query, k, filter, kwargs)

    # ------------------------------------------------------------------ updates
    def add_documents(self, documents: Iterable[Document], ids: Sequence[str] | None = None) -> list[str]:
        """Add documents to the index; returns their ids."""
        documents = list(documents)
        ids = ids or ([d.id for d in documents] if all(d.id for d in documents) else None)
        return self.index.add(
            [d.page_content for d in documents], ids=ids, metadatas=[dict(d.metadata) for d in documents]
        )

    def delete(self, ids: Sequence[str]) -> int:
        """Delete passages by id; returns how many."""
        return self.index.delete(list(ids))
