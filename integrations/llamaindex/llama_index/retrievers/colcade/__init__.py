"""LlamaIndex integration of colcade: a late-interaction retriever (and its MaxSim reranker)."""

from llama_index.postprocessor.colcade_rerank import ColcadeRerank
from llama_index.retrievers.colcade.base import ColcadeRetriever, to_colcade_filter

__all__ = ["ColcadeRerank", "ColcadeRetriever", "to_colcade_filter"]
