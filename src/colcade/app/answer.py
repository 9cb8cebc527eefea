"""Answers for ``colcade ask``: the configured LLM (run through ``langchain_colcade.rag_chain``),
else extractive.

Without an LLM nothing is made up: the answer is the retrieved passages' best sentences (by
how many question terms they contain, then by passage rank) with those terms highlighted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from colcade.optional import require
from colcade.results import Hit

_STOP = set(
    "a an and are as at be by can did do does for from has have how i in is it its me my of on or "
    "the their there these this to was were what when where which who why will with you your".split()
)


@dataclass(frozen=True)
class Sentence:
    text: str
    hit: Hit
    terms: frozenset[str]


def terms_of(question: str) -> set[str]:
    return {w for w in re.findall(r"\w+", question.lower()) if len(w) > 2 and w not in _STOP}


def extractive_answer(question: str, hits: Sequence[Hit], max_sentences: int = 3) -> list[Sentence]:
    """The sentences of ``hits`` that share most terms with the question (ties: better passage first)."""
    terms = terms_of(question)
    scored, seen = [], set()
    for rank, hit in enumerate(hits):
        for sentence in re.split(r"(?<=[.!?])\s+|\n{2,}", hit.text):
            sentence = " ".join(sentence.split())
            if len(sentence) < 20 or sentence in seen:  # overlapping passages repeat sentences
                continue
            seen.add(sentence)
            found = frozenset(t for t in terms if re.search(rf"\b{re.escape(t)}", sentence, re.I))
            scored.append((-len(found), rank, Sentence(sentence, hit, found)))
    scored.sort(key=lambda x: (x[0], x[1]))
    return [s for n, _, s in scored[:max_sentences] if n < 0] or [s for _, _, s in scored[:1]]


def highlight(sentence: Sentence, color: bool = True) -> str:
    start, end = ("\033[1;33m", "\033[0m") if color else ("**", "**")
    text = sentence.text
    for term in sorted(sentence.terms, key=len, reverse=True):
        text = re.sub(rf"\b({re.escape(term)}\w*)", rf"{start}\1{end}", text, flags=re.I)
    return text


def configured_llm(model: str | None = None, base_url: str | None = None) -> Any | None:
    """The chat model set by flags or environment, or None.

    OpenAI-compatible endpoint: ``--llm-base-url`` / ``COLCADE_LLM_BASE_URL`` (or ``OPENAI_BASE_URL``,
    or just ``OPENAI_API_KEY``) and ``--llm-model`` / ``COLCADE_LLM_MODEL``; a local Ollama model:
    ``COLCADE_OLLAMA_MODEL`` (or ``--llm-model ollama:NAME``).
    """
    model = model or os.environ.get("COLCADE_LLM_MODEL")
    ollama = os.environ.get("COLCADE_OLLAMA_MODEL")
    if model and model.startswith("ollama:"):
        ollama, model = model.split(":", 1)[1], None
    if ollama:
        chat = require("langchain_ollama", "langchain-ollama", "the configured Ollama model").ChatOllama
        return chat(model=ollama)
    base_url = base_url or os.environ.get("COLCADE_LLM_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
    if base_url or os.environ.get("OPENAI_API_KEY"):
        chat = require("langchain_openai", "langchain-openai", "the configured OpenAI-compatible LLM").ChatOpenAI
        return chat(
            model=model or "gpt-4o-mini", base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "not-needed")
        )
    return None
