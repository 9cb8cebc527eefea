"""``colcade demo``: index text every Python carries (the language reference in ``pydoc_data``)
with the embedded default encoder, then answer a few questions, offline, in about a minute."""

from __future__ import annotations

import time
from typing import TextIO

from colcade.app.answer import extractive_answer, highlight
from colcade.app.chunking import split_passages
from colcade.index import LateIndex

QUESTIONS = [
    "how do I catch an exception and run cleanup code",
    "what does the yield statement do in a function",
    "which operators can a class overload for comparisons",
]


def build_index(show_progress: bool = True) -> LateIndex:
    from pydoc_data.topics import topics

    index = LateIndex.in_memory()
    texts, metadatas = [], []
    for topic, body in topics.items():
        for passage in split_passages(body, max_tokens=160, count_tokens=index.encoder.count_tokens):
            texts.append(passage.text)
            metadatas.append({"source": f"pydoc:{topic}", "topic": topic, "start": passage.start})
    index.add(texts, metadatas=metadatas, show_progress=show_progress)
    return index


def run(out: TextIO, questions: list[str] | None = None, color: bool = True) -> LateIndex:
    start = time.perf_counter()
    index = build_index(show_progress=color)
    out.write(
        f"Indexed {len(index)} passages of the Python language reference in {time.perf_counter() - start:.1f} s "
        f"(encoder: {index.encoder.name}, offline).\n\n"
    )
    for question in questions or QUESTIONS:
        hits = index.search(question, k=3)
        out.write(f"Q: {question}\n")
        for sentence in extractive_answer(question, hits, max_sentences=2):
            out.write(f"   {highlight(sentence, color)}  [{sentence.hit.metadata['topic']}]\n")
        out.write("   sources: " + ", ".join(f"{h.metadata['topic']} ({h.normalized_score:.2f})" for h in hits) + "\n")
        out.write("   stages: " + hits.stages() + "\n\n")
    out.write(
        "No LLM is configured, so answers are the passages' best sentences. "
        "Try `colcade index`, `colcade search` and `colcade ask` on your own files.\n"
    )
    return index
