"""A LangChain RAG chain (LCEL) over a colcade retriever, offline.

    python examples/langchain_rag_chain.py

The chain is the usual one: retrieve, format the passages into the prompt, call the model,
parse the text. The model here is LangChain's offline fake chat model, so the example runs
anywhere; put your own chat model in its place.
"""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough

from langchain_colcade import ColcadeRetriever

PASSAGES = [
    "ColBERT encodes every token of a passage and scores queries with MaxSim.",
    "MaxSim sums, over query tokens, the best dot product with any passage token.",
    "BM25 ranks passages by term frequency and inverse document frequency.",
    "A dense retriever compresses a passage into one vector.",
]


def format_docs(docs) -> str:
    return "\n\n".join(f"[{d.id}] {d.page_content}" for d in docs)


def build_chain(llm):
    retriever = ColcadeRetriever.from_texts(PASSAGES, ids=[f"p{i}" for i in range(len(PASSAGES))], k=2)
    prompt = ChatPromptTemplate.from_template(
        "Answer from the context only.\n\nContext:\n{context}\n\nQuestion: {question}"
    )
    chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()
    return chain, retriever


if __name__ == "__main__":
    llm = FakeListChatModel(responses=["MaxSim adds up each query token's best match among the passage tokens [p1]."])
    chain, retriever = build_chain(llm)
    question = "How does MaxSim score a passage?"
    print("retrieved:", [d.id for d in retriever.invoke(question)])
    print("answer:", chain.invoke(question))
