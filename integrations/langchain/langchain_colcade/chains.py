"""The RAG chain of ``colcade ask``: retrieve, format with sources, prompt, LLM, text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseLanguageModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnablePassthrough

PROMPT = (
    "Answer the question using only the context. Cite the sources in brackets. "
    "If the context does not contain the answer, say so.\n\nContext:\n{context}\n\nQuestion: {question}"
)


def format_docs(docs: Sequence[Any]) -> str:
    """Passages as ``[source] text`` blocks (the source is metadata["source"], else the id)."""
    return "\n\n".join(f"[{d.metadata.get('source', d.id)}] {d.page_content}" for d in docs)


def rag_chain(retriever: BaseRetriever, llm: BaseLanguageModel) -> Runnable:
    """The LCEL chain ``{"context": retriever | format_docs, "question": ...} | prompt | llm | parser``.

    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> from langchain_colcade import ColcadeRetriever
    >>> retriever = ColcadeRetriever.from_texts(["The violin has four strings."], k=1)
    >>> rag_chain(retriever, FakeListChatModel(responses=["Four."])).invoke("How many strings?")
    'Four.'
    """
    prompt = ChatPromptTemplate.from_template(PROMPT)
    return {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()
