"""LlamaIndex integration of colcade: a late-interaction index and retriever (and a MaxSim reranker)."""

from llama_index.postprocessor.colcade_rerank import ColcadeRerank
from llama_index.retrievers.colcade.base import ColcadeRetriever, to_colcade_filter
from llama_index.retrievers.colcade.index import ColcadeIndex

__all__ = ["ColcadeIndex", "ColcadeRerank", "ColcadeRetriever", "to_colcade_filter"]
