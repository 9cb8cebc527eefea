"""ColcadeRetriever: LangChain's BaseRetriever over a colcade index (or anything with its ``search``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from colcade import LateIndex
from colcade.encoders import Encoder
from colcade.locations import open_index


class ColcadeRetriever(BaseRetriever):
    """Late-interaction retrieval for LangChain: a colcade ``LateIndex`` as a retriever.

    ``k``, ``filter`` and the stage widths (``search_kwargs``: ``n_shortlist``,
    ``n_prefilter``, ``exhaustive``, ``hybrid``, and ``k`` / ``filter`` as LangChain tutorials pass them)
    are fields, and can also be given per call: ``retriever.invoke("question", k=3,
    filter={"source": "a.pdf"})``; a call's values win over ``search_kwargs``, which win over
    the fields. Searches are hybrid (MaxSim fused with BM25) unless ``hybrid`` is False.
    Documents carry the passage id and the score (fused, or MaxSim) in
    ``metadata[score_key]`` (``"colcade_score"``: a user's own ``score`` field is left alone).
    The score differs between queries, so retrievers that merge several queries' documents by
    equality (``MultiQueryRetriever``) see one passage twice: give them ``score_key=None``.

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
    score_key: str | None = "colcade_score"
    """The metadata key the score goes under (None: no score in the metadata)."""
    normalize_scores: bool = False
    """Give the score in [0, 1]: MaxSim over the query's token count (comparable across queries) when
    ``hybrid`` is False, the fused score as it is otherwise."""

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
        """Index LangChain ``Document``s (their ``id`` is kept where set, made up where not)."""
        return cls.from_texts(
            [d.page_content for d in documents], [dict(d.metadata) for d in documents], ids=_ids_of(documents), **kwargs
        )

    @classmethod
    def from_index(cls, index: Any, encoder: Encoder | None = None, **kwargs: Any) -> ColcadeRetriever:
        """Wrap an index, or open the one at a path or a Qdrant location (``qdrant://HOST:PORT/NAME``,
        ``qdrant-local:FOLDER/NAME``; see ``colcade.locations``)."""
        if isinstance(index, (str, Path)):
            index = open_index(index, encoder=encoder)
        return cls(index=index, **kwargs)

    # ------------------------------------------------------------------ retrieval
    def _search(
        self, query: str, k: int | None, filter: dict[str, Any] | None, kwargs: dict[str, Any]
    ) -> list[Document]:
        widths = {**self.search_kwargs, **kwargs}
        base_k, base_filter = widths.pop("k", self.k), widths.pop("filter", self.filter)
        k = base_k if k is None else k  # k=0 stays 0: colcade says it is invalid
        hits = self.index.search(query, k=k, filter=filter if filter is not None else base_filter, **widths)
        key = self.score_key
        return [
            Document(
                id=hit.id,
                page_content=hit.text,
                metadata={**hit.metadata, key: self._score(hit)} if key else hit.metadata,
            )
            for hit in hits
        ]

    def _score(self, hit: Any) -> float:
        return float(hit.normalized_score if self.normalize_scores else hit.score)

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
        """Add documents, replacing any with the same id (LangChain's upsert); returns their ids.

        Ids come from ``ids``, else each document's ``id``, else are made up (per document).
        """
        documents = list(documents)
        return self.index.upsert(
            [d.page_content for d in documents],
            ids=list(ids) if ids is not None else _ids_of(documents),
            metadatas=[dict(d.metadata) for d in documents],
        )

    def delete(self, ids: Sequence[str]) -> int:
        """Delete passages by id; returns how many."""
        return self.index.delete(list(ids))


def _ids_of(documents: Sequence[Document]) -> list[str]:
    """Each document's id; a document without one gets a new one (the others keep theirs)."""
    return [d.id or uuid.uuid4().hex for d in documents]
