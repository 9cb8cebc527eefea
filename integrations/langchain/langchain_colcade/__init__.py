"""LangChain integration of colcade: a late-interaction vector store, retriever and MaxSim reranker.

>>> from langchain_colcade import ColcadeRetriever, ColcadeReranker, ColcadeVectorStore
"""

from langchain_colcade.chains import rag_chain
from langchain_colcade.rerankers import ColcadeReranker
from langchain_colcade.retrievers import ColcadeRetriever
from langchain_colcade.self_query import ColcadeTranslator
from langchain_colcade.vectorstores import ColcadeVectorStore

__all__ = ["ColcadeReranker", "ColcadeRetriever", "ColcadeTranslator", "ColcadeVectorStore", "rag_chain"]
