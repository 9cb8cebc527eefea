"""ColcadeRetriever: LlamaIndex's BaseRetriever over a colcade index."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters  # noqa: F401 (doctest)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from colcade import FilterError, LateIndex
from colcade.encoders import Encoder
from colcade.locations import open_index

_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.CONTAINS: "$contains",
    FilterOperator.ANY: "$any",
    FilterOperator.ALL: "$all",
    FilterOperator.TEXT_MATCH: "$text",
    FilterOperator.IS_EMPTY: "$empty",
}
if hasattr(FilterOperator, "TEXT_MATCH_INSENSITIVE"):  # newer llama-index-core
    _OPERATORS[FilterOperator.TEXT_MATCH_INSENSITIVE] = "$itext"


def to_colcade_filter(filters: MetadataFilters | dict[str, Any] | None) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` as a colcade filter (a dict passes through unchanged).

    >>> to_colcade_filter(MetadataFilters(filters=[MetadataFilter(key="year", value=2020, operator=">=")]))
    {'$and': [{'year': {'$gte': 2020}}]}
    """
    if filters is None or isinstance(filters, dict):
        return filters
    parts = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            parts.append(to_colcade_filter(f))
            continue
        if f.operator not in _OPERATORS:
            supported = ", ".join(op.value for op in _OPERATORS)
            raise FilterError(
                f"filter operator {f.operator.value!r} on {f.key!r} is not supported by colcade; use one of {supported}"
            )
        value = True if f.operator == FilterOperator.IS_EMPTY else f.value  # IS_EMPTY carries no value
        parts.append({f.key: {_OPERATORS[f.operator]: value}})
    if filters.condition == FilterCondition.NOT:
        return {"$not": {"$and": parts}}
    return {"$or" if filters.condition == FilterCondition.OR else "$and": parts}


class ColcadeRetriever(BaseRetriever):
    """Late-interaction retrieval for LlamaIndex: a colcade ``LateIndex`` as a retriever.

    Returns ``NodeWithScore(TextNode(id_=..., text=..., metadata=...), score)``. Searches are
    hybrid (MaxSim fused with BM25, a score in [0, 1]) unless ``search_kwargs={"hybrid": False}``;
    then the score is the MaxSim sum, or with ``normalize_scores=True`` the MaxSim score divided by the query's
    token count (the mean best cosine of a query token: about 0..1, and comparable across
    queries, so ``SimilarityPostprocessor(similarity_cutoff=...)`` means the same for a
    one-word query and a long one). ``filters`` (LlamaIndex ``MetadataFilters`` or a colcade
    filter dict) apply before ranking.

    Example:
        .. code-block:: python

            from llama_index.retrievers.colcade import ColcadeRetriever

            retriever = ColcadeRetriever.from_texts(["colcade ranks by MaxSim", "BM25 counts words"])
            retriever.retrieve("late interaction")
    """

    def __init__(
        self,
        index: Any,
        similarity_top_k: int = 4,
        filters: MetadataFilters | dict[str, Any] | None = None,
        search_kwargs: dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        normalize_scores: bool = False,
    ) -> None:
        self.index = index
        self.normalize_scores = normalize_scores
        self.similarity_top_k = similarity_top_k
        self.filters = filters
        self.search_kwargs = dict(search_kwargs or {})
        super().__init__(callback_manager=callback_manager, verbose=verbose)

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
        return cls(LateIndex.from_texts(texts, metadatas=metadatas, ids=ids, encoder=encoder, path=path), **kwargs)

    @classmethod
    def from_documents(cls, documents: Sequence[BaseNode], **kwargs: Any) -> ColcadeRetriever:
        """Index LlamaIndex ``Document``s or nodes (their ids and metadata are kept)."""
        return cls.from_texts(
            [d.get_content() for d in documents],
            [dict(d.metadata) for d in documents],
            ids=[d.node_id for d in documents],
            **kwargs,
        )

    @classmethod
    def from_index(cls, index: Any, encoder: Encoder | None = None, **kwargs: Any) -> ColcadeRetriever:
        """Wrap an index, or open the one at a path or a Qdrant location (``qdrant://HOST:PORT/NAME``,
        ``qdrant-local:FOLDER/NAME``; see ``colcade.locations``)."""
        if isinstance(index, (str, Path)):
            index = open_index(index, encoder=encoder)
        return cls(index, **kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.index.search(
            query_bundle.query_str,
            k=self.similarity_top_k,
            filter=to_colcade_filter(self.filters),
            **self.search_kwargs,
        )
        return [
            NodeWithScore(node=_node(h), score=h.normalized_score if self.normalize_scores else h.score) for h in hits
        ]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # The kernels release the GIL: a worker thread keeps the event loop free meanwhile.
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def insert(self, nodes: Sequence[BaseNode]) -> list[str]:
        """Add nodes (or Documents), replacing any with the same id; visible to the next retrieval.

        Nodes are stored whole, so a retrieval returns their ``ref_doc_id`` and relationships.
        """
        return self.index.upsert(
            [n.get_content() for n in nodes],
            ids=[n.node_id for n in nodes],
            metadatas=[node_to_metadata_dict(n, remove_text=True, flat_metadata=False) for n in nodes],
        )

    def delete(self, ids: Sequence[str]) -> int:
        """Delete nodes by id; returns how many."""
        return self.index.delete(list(ids))


def _node(hit: Any) -> BaseNode:
    """The stored node: whole (relationships, ref_doc_id) when ColcadeIndex wrote it, else a TextNode."""
    if "_node_content" in hit.metadata:
        return metadata_dict_to_node(hit.metadata, text=hit.text)
    return TextNode(id_=hit.id, text=hit.text, metadata=dict(hit.metadata))
