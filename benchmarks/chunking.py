"""colcade's splitter against the libraries issue 14 asked to judge, on whole articles.

SQuAD 2.0's dev paragraphs are joined back into their Wikipedia articles (paragraphs separated by
a blank line, as in a .txt or .md file), split by each contender into passages of at most the
default encoder's 256 tokens (counted by the encoder's own tokenizer, for every contender), and
indexed; each answerable question is searched exhaustively (so the split is the only thing that
differs) and counts as answered at k when one of the top k passages comes from the question's
article and contains one of its answers. A second run strips the blank lines (text as it comes
out of many PDFs), where paragraph boundaries are gone.

    python benchmarks/chunking.py            # all answerable questions (~1,200 s on 2 cores)
    python benchmarks/chunking.py --queries 500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(__file__))
from report import ROOT, table, write_section  # noqa: E402

from colcade import LateIndex  # noqa: E402
from colcade.app.chunking import split_passages  # noqa: E402
from colcade.encoders import default_encoder  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "squad2_dev_passages"
Splitter = Callable[[str], list[str]]


def articles() -> dict[str, list[str]]:
    """Title -> its paragraphs in order (ids are ``<title>_<n>``)."""
    out: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for line in open(DATA / "corpus.jsonl"):
        row = json.loads(line)
        out[row["title"]].append((int(row["_id"].rsplit("_", 1)[1]), row["text"]))
    return {title: [text for _, text in sorted(rows)] for title, rows in out.items()}


def questions(limit: int | None) -> list[tuple[str, str, list[str]]]:
    """(question, its article's title, answers) for the answerable questions."""
    answers = {}
    for line in open(DATA / "answers.jsonl"):
        row = json.loads(line)
        answers[row["_id"]] = row["answers"]
    gold = {}
    qrels = next(p for p in (DATA / "qrels").iterdir() if p.suffix == ".tsv")
    for line in open(qrels).read().splitlines()[1:]:
        qid, pid, _ = line.split("\t")
        gold[qid] = pid.rsplit("_", 1)[0]
    out = []
    for line in open(DATA / "queries.jsonl"):
        row = json.loads(line)
        if answers.get(row["_id"]) and row["_id"] in gold:
            out.append((row["text"], gold[row["_id"]], answers[row["_id"]]))
    return out[:limit] if limit else out


def contenders(limit: int, count: Callable[[str], int]) -> dict[str, tuple[str, Splitter]]:
    """Name -> (what it brings in, splitter), each splitting to ``limit`` tokens by ``count``.

    ``count`` includes [CLS] and [SEP]; the libraries add up the lengths of the pieces they merge,
    so they get the count without them (else every word would cost 3) and a limit 2 lower.
    """
    words = lambda t: max(0, count(t) - 2)  # noqa: E731
    out: dict[str, tuple[str, Splitter]] = {
        "colcade (overlap 0)": (
            "nothing",
            lambda t: [p.text for p in split_passages(t, max_tokens=limit, overlap=0, count_tokens=count)],
        ),
        "colcade (default, overlap 1)": (
            "nothing",
            lambda t: [p.text for p in split_passages(t, max_tokens=limit, overlap=1, count_tokens=count)],
        ),
    }
    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        lc = RecursiveCharacterTextSplitter(chunk_size=limit - 2, chunk_overlap=0, length_function=words)
        out["langchain RecursiveCharacterTextSplitter"] = ("langchain-core (+ pydantic, ...)", lc.split_text)
    except ImportError:
        print("langchain-text-splitters not installed: skipped")
    try:
        import semchunk

        chunker = semchunk.chunkerify(words, chunk_size=limit - 2)
        out["semchunk"] = ("mpire, tqdm", lambda t: chunker(t))
    except ImportError:
        print("semchunk not installed: skipped")
    try:
        from llama_index.core.node_parser import SentenceSplitter

        # SentenceSplitter takes a tokenizer and only takes len() of what it returns.
        ll = SentenceSplitter(chunk_size=limit - 2, chunk_overlap=0, tokenizer=lambda t: [None] * words(t))
        out["llama-index SentenceSplitter"] = ("llama-index-core (nltk, sqlalchemy, ...)", ll.split_text)
    except ImportError:
        print("llama-index-core not installed: skipped")
    return out


def evaluate(name: str, split: Splitter, docs: dict[str, str], qs, count, limit: int, encoder) -> list[object]:
    started = time.perf_counter()
    texts, titles = [], []
    for title, text in docs.items():
        for chunk in split(text):
            if chunk.strip():
                texts.append(chunk)
                titles.append(title)
    seconds = time.perf_counter() - started
    tokens = [count(t) for t in texts]
    index = LateIndex.in_memory(encoder=encoder, storage="float16")
    index.add(texts, metadatas=[{"title": t} for t in titles], show_progress=False)
    hit1 = hit5 = 0
    for question, title, answers in qs:
        hits = index.search(question, k=5, exhaustive=True)
        found = [any(a in h.text for a in answers) and h.metadata["title"] == title for h in hits]
        hit1 += bool(found[:1] and found[0])
        hit5 += any(found)
    n = len(qs)
    return [
        name,
        len(texts),
        f"{sum(tokens) / len(tokens):.0f}",
        max(tokens),
        sum(t > limit for t in tokens),
        f"{seconds:.2f}",
        f"{hit1 / n:.3f}",
        f"{hit5 / n:.3f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=None, help="first N answerable questions (default: all)")
    args = parser.parse_args()
    encoder = default_encoder()
    limit, count = encoder.max_length, encoder.count_tokens
    paragraphs = articles()
    qs = questions(args.queries)
    header = ["splitter", "passages", "mean tokens", "max tokens", f"over {limit}", "split s"]
    header += ["answered@1", "answered@5"]
    sections = []
    for layout, joiner in (("paragraphs kept (blank lines)", "\n\n"), ("paragraphs lost (one line)", " ")):
        docs = {title: joiner.join(ps) for title, ps in paragraphs.items()}
        rows = []
        for name, (_, split) in contenders(limit, count).items():
            rows.append(evaluate(name, split, docs, qs, count, limit, encoder))
            print(rows[-1], flush=True)
        sections.append(f"**{layout}**\n\n" + table(header, rows))
    deps = table(["splitter", "brings in"], [[n, d] for n, (d, _) in contenders(limit, count).items()])
    body = (
        "### Splitting documents (issue 14)\n\n"
        f"{len(paragraphs)} SQuAD 2.0 dev articles rejoined from their paragraphs, {len(qs)} answerable "
        "questions, default encoder, exhaustive MaxSim; answered@k: a top-k passage is from the question's "
        "article and contains an answer.\n\n" + "\n\n".join(sections) + "\n\n" + deps
    )
    write_section("chunking", body, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
