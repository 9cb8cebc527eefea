"""colcade on real text, offline: index the Python language reference, then ask it questions.

    python examples/quickstart.py

The text ships with every Python (``pydoc_data``); the encoder is colcade's embedded default
(all-MiniLM-L6-v2, no download). About half a minute on 2 cores.
"""

from __future__ import annotations

import time

from pydoc_data.topics import topics

from colcade import LateIndex
from colcade.chunking import split_passages

QUESTIONS = [
    "how do I catch an exception and run cleanup code",
    "what does the yield statement do in a function",
    "which operators can a class overload for comparisons",
]


def main() -> None:
    index = LateIndex.in_memory()  # the embedded default encoder
    texts, metadatas = [], []
    for topic, body in topics.items():
        for passage in split_passages(body, max_tokens=160, count_tokens=index.encoder.count_tokens):
            texts.append(passage.text)
            metadatas.append({"topic": topic, "start": passage.start})

    start = time.perf_counter()
    index.add(texts, metadatas=metadatas, show_progress=True)
    print(f"indexed {len(texts)} passages of the Python language reference in {time.perf_counter() - start:.1f} s\n")

    for question in QUESTIONS:
        hits = index.search(question, k=3)
        print(f"Q: {question}")
        for hit in hits:
            first_line = " ".join(hit.text.split())[:90]
            print(f"   {hit.normalized_score:.3f}  [{hit.metadata['topic']}] {first_line}...")
        print("   " + ", ".join(f"{s.name} {s.candidates_in}->{s.candidates_out} {s.ms:.1f} ms" for s in hits.stats) + "\n")

    # Filters narrow the search before ranking.
    hits = index.search("what happens to a variable that is not declared global", k=2, filter={"topic": "naming"})
    print("within the 'naming' topic:", [h.text.split(".")[0][:70] for h in hits])


if __name__ == "__main__":
    main()
