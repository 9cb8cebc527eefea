"""Retrieval evaluation: BEIR collections, nDCG@k / Recall@k, and fidelity to exhaustive MaxSim.

>>> qrels = {"q1": {"d1": 1, "d3": 2}}
>>> round(ndcg({"q1": ["d3", "d2", "d1"]}, qrels, k=10), 4)
0.9502
>>> recall({"q1": ["d3", "d2"]}, qrels, k=10)
0.5
>>> fidelity({"q1": ["a", "b"]}, {"q1": ["b", "c"]}, k=2)
0.5
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from colcade.errors import InvalidInputError

Run = Mapping[str, Sequence[str]]  # query id -> ranked document ids
Qrels = Mapping[str, Mapping[str, int]]  # query id -> document id -> relevance grade


@dataclass
class Collection:
    """A BEIR-layout collection: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""

    name: str
    corpus: dict[str, dict[str, str]]  # id -> {"title", "text"}
    queries: dict[str, str]  # judged queries only
    qrels: dict[str, dict[str, int]]

    def passages(self) -> tuple[list[str], list[str]]:
        """Document ids and texts (title and text joined, as BEIR evaluations do)."""
        ids = list(self.corpus)
        texts = [(d.get("title", "") + " " + d["text"]).strip() or d["text"] for d in self.corpus.values()]
        return ids, texts


def load_beir(path: str | Path, split: str = "test") -> Collection:
    """Read a BEIR collection, keeping the queries judged in ``split``."""
    path = Path(path)
    files = [path / "corpus.jsonl", path / "queries.jsonl", path / "qrels" / f"{split}.tsv"]
    for f in files:
        if not f.is_file():
            raise InvalidInputError(f"{path} is not a BEIR collection: {f.relative_to(path)} is missing")
    corpus = {}
    with open(files[0]) as f:
        for line in f:
            doc = json.loads(line)
            corpus[str(doc["_id"])] = {"title": doc.get("title") or "", "text": doc.get("text") or ""}
    qrels: dict[str, dict[str, int]] = {}
    with open(files[2]) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if int(row["score"]) > 0:
                qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    queries = {}
    with open(files[1]) as f:
        for line in f:
            q = json.loads(line)
            if str(q["_id"]) in qrels:
                queries[str(q["_id"])] = q["text"]
    return Collection(path.name, corpus, queries, {q: r for q, r in qrels.items() if q in queries})


def ndcg(run: Run, qrels: Qrels, k: int = 10) -> float:
    """Mean nDCG@k over the judged queries of ``run`` (graded gains, log2 discount)."""
    scores = []
    for qid, ranked in run.items():
        rel = qrels.get(qid, {})
        if not rel:
            continue
        dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
        ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(rel.values(), reverse=True)[:k]))
        scores.append(dcg / ideal)
    return sum(scores) / len(scores) if scores else 0.0


def _relevant(qrels: Qrels, qid: str) -> set[str]:
    return {d for d, g in qrels.get(qid, {}).items() if g > 0}


def recall(run: Run, qrels: Qrels, k: int = 100) -> float:
    """Mean share of each query's relevant documents (judged > 0) found in its top ``k``."""
    scores = [len(set(ranked[:k]) & rel) / len(rel) for q, ranked in run.items() if (rel := _relevant(qrels, q))]
    return sum(scores) / len(scores) if scores else 0.0


def mrr(run: Run, qrels: Qrels, k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant document in the top ``k`` (0 when none).

    >>> mrr({"q": ["a", "b"]}, {"q": {"b": 1}})
    0.5
    """
    scores = []
    for q, ranked in run.items():
        rel = _relevant(qrels, q)
        if rel:
            scores.append(next((1 / (i + 1) for i, d in enumerate(ranked[:k]) if d in rel), 0.0))
    return sum(scores) / len(scores) if scores else 0.0


def average_precision(run: Run, qrels: Qrels, k: int = 100) -> float:
    """MAP@k: mean over queries of the precision at each relevant hit in the top ``k``, over all relevant.

    >>> average_precision({"q": ["a", "b", "c"]}, {"q": {"a": 1, "c": 1}})
    0.8333333333333333
    """
    scores = []
    for q, ranked in run.items():
        rel = _relevant(qrels, q)
        if not rel:
            continue
        found, total = 0, 0.0
        for i, d in enumerate(ranked[:k]):
            if d in rel:
                found += 1
                total += found / (i + 1)
        scores.append(total / len(rel))
    return sum(scores) / len(scores) if scores else 0.0


def write_trec_run(run: Run, path: str | Path, tag: str = "colcade") -> None:
    """A TREC run file: ``qid Q0 docid rank score tag`` (scores: descending by rank)."""
    with open(path, "w") as f:
        for q, ranked in run.items():
            for i, d in enumerate(ranked):
                f.write(f"{q} Q0 {d} {i + 1} {len(ranked) - i} {tag}\n")


def fidelity(run: Run, exhaustive: Run, k: int = 10) -> float:
    """Mean share of the exhaustive MaxSim top-``k`` that ``run`` also returns in its top ``k``."""
    scores = [len(set(run[q][:k]) & set(exhaustive[q][:k])) / max(1, min(k, len(exhaustive[q]))) for q in exhaustive]
    return sum(scores) / len(scores) if scores else 0.0
