"""A LlamaIndex query engine and retriever tool over a colcade retriever, offline.

    python examples/llamaindex_query_engine.py

MockLLM stands in for a real LLM (it echoes part of the prompt), so the example runs anywhere.
"""

from __future__ import annotations

from llama_index.core import Document
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.tools import RetrieverTool
from llama_index.core.vector_stores import MetadataFilter, MetadataFilters

from llama_index.postprocessor.colcade_rerank import ColcadeRerank
from llama_index.retrievers.colcade import ColcadeRetriever

DOCS = [
    Document(
        text="Late interaction keeps one vector per token and scores with MaxSim.",
        metadata={"year": 2020},
        id_="colbert",
    ),
    Document(text="PLAID speeds up ColBERT retrieval with centroid pruning.", metadata={"year": 2022}, id_="plaid"),
    Document(text="BM25 is a bag-of-words ranking function.", metadata={"year": 1994}, id_="bm25"),
]


def build():
    retriever = ColcadeRetriever.from_documents(DOCS, similarity_top_k=2)
    engine = RetrieverQueryEngine.from_args(
        retriever, llm=MockLLM(max_tokens=16), node_postprocessors=[ColcadeRerank(top_n=1)]
    )
    tool = RetrieverTool.from_defaults(retriever=retriever, name="papers", description="Finds retrieval papers.")
    return retriever, engine, tool


if __name__ == "__main__":
    retriever, engine, tool = build()
    print("retrieved:", [(n.node.node_id, round(n.score, 2)) for n in retriever.retrieve("token-level scoring")])
    recent = ColcadeRetriever.from_documents(
        DOCS, filters=MetadataFilters(filters=[MetadataFilter(key="year", value=2021, operator=">=")])
    )
    print("since 2021:", [n.node.node_id for n in recent.retrieve("ColBERT")])
    response = engine.query("What does late interaction keep?")
    print("answer sources:", [n.node.node_id for n in response.source_nodes])
    print("tool:", tool.call("MaxSim").content[:80])
