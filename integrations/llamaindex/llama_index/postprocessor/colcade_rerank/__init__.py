"""ColcadeRerank: MaxSim reranking of any retriever's nodes, as a LlamaIndex node postprocessor."""

from llama_index.postprocessor.colcade_rerank.base import ColcadeRerank

__all__ = ["ColcadeRerank"]
