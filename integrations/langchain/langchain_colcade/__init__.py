"""LangChain integration of colcade: a late-interaction retriever and a MaxSim reranker.

>>> from langchain_colcade import ColcadeRetriever, ColcadeReranker
"""

from langchain_colcade.chains import rag_chain
from langchain_colcade.rerankers import ColcadeReranker
from langchain_colcade.retrievers import ColcadeRetriever

__all__ = ["ColcadeReranker", "ColcadeRetriever", "rag_chain"]
