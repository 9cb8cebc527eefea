"""ColcadeRerank: MaxSim reranking of any retriever's nodes, batched in one encode."""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from colcade.encoders import default_encoder
from colcade.errors import InvalidInputError
from colcade.rerank import rerank


class ColcadeRerank(BaseNodePostprocessor):
    """Rerank nodes by late-interaction MaxSim and keep the best ``top_n``.

    Unlike a per-document loop, all candidates are encoded in one batched call.

    Example:
        .. code-block:: python

            from llama_index.postprocessor.colcade_rerank import ColcadeRerank

            query_engine = index.as_query_engine(node_postprocessors=[ColcadeRerank(top_n=3)])
    """

    top_n: int = Field(default=3, description="How many nodes to keep.")
    _encoder: Any = PrivateAttr(default=None)

    def __init__(self, top_n: int = 3, encoder: Any = None, **kwargs: Any) -> None:
        super().__init__(top_n=top_n, **kwargs)
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "ColcadeRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise InvalidInputError("ColcadeRerank needs the query: pass query_bundle (or query_str)")
        if not nodes:
            return []
        encoder = self._encoder if self._encoder is not None else default_encoder()
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        ranked = rerank(encoder, query_bundle.query_str, texts, k=min(self.top_n, len(nodes)))
        return [NodeWithScore(node=nodes[i].node, score=score) for i, score in ranked]
