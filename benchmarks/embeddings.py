"""Embeddings of the shared collections by the default encoder, cached on disk.

One forward pass per passage and query keeps every token (with its token id), so token
selection variants are masks over the cache, and reruns take seconds, not minutes.
The cache lives in benchmarks/.cache (ignored by git): vectors derived from the collections
stay out of the repository, like the collections themselves.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colcade.app.eval import Collection, load_beir
from colcade.encoders.base import fingerprint_of, sha256_file
from colcade.encoders.default import MiniLMEncoder

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = Path(__file__).resolve().parent / ".cache"
COLLECTIONS = ["scifact", "nfcorpus_preprocessed", "cranfield", "squad2_dev_passages"]


@dataclass
class Embedded:
    """Every token of every text: vectors float16 [T, 384], ids int32 [T], offsets [n + 1], dense [n, 384]."""

    ids: list[str]
    vectors: np.ndarray
    token_ids: np.ndarray
    offsets: np.ndarray
    dense: np.ndarray

    def tokens(self, keep: np.ndarray) -> list[np.ndarray]:
        """Token matrices per text, keeping rows whose token id ``keep`` allows (all if none would remain)."""
        out = []
        for i in range(len(self.ids)):
            rows = slice(self.offsets[i], self.offsets[i + 1])
            chosen = keep[self.token_ids[rows]]
            out.append(np.asarray(self.vectors[rows][chosen if chosen.any() else slice(None)], np.float32))
        return out


def _embed(encoder: MiniLMEncoder, ids: list[str], texts: list[str], label: str) -> Embedded:
    vectors, token_ids, lengths = [], [], []
    dense = np.empty((len(texts), encoder.dense_dim), np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    per_text: list = [None] * len(texts)
    start_time = time.time()
    for start in range(0, len(order), 32):
        batch = order[start : start + 32]
        enc = encoder.tokenizer.encode_batch([texts[i] for i in batch])
        tid = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        hidden = encoder._run(tid, mask)
        for row, i in enumerate(batch):
            real = mask[row].astype(bool)
            h = hidden[row][real]
            pooled = h.mean(axis=0)
            dense[i] = pooled / np.linalg.norm(pooled)
            per_text[i] = (
                (h / np.linalg.norm(h, axis=1, keepdims=True)).astype(np.float16),
                tid[row][real].astype(np.int32),
            )
        print(
            f"\r{label}: {min(start + 32, len(texts))}/{len(texts)} ({time.time() - start_time:.0f} s)",
            end="",
            file=sys.stderr,
        )
    print(file=sys.stderr)
    for v, t in per_text:
        vectors.append(v)
        token_ids.append(t)
        lengths.append(len(t))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Embedded(ids, np.concatenate(vectors), np.concatenate(token_ids), offsets, dense)


def cache_key(encoder: MiniLMEncoder) -> str:
    """The model's identity without its token-selection options: the cache holds every token.
    Its arithmetic is part of it where it is not float32 (float32 keys predate the option)."""
    precision = [encoder.precision] if encoder.precision != "float32" else []
    return fingerprint_of(encoder.name, sha256_file(encoder.weights), encoder.max_length, *precision)


def load(name: str, encoder: MiniLMEncoder | None = None, split: str = "test") -> tuple[Collection, Embedded, Embedded]:
    """(collection, passages, queries judged in ``split``), encoding and caching on first use."""
    collection = load_beir(DATA / name, split=split)
    encoder = encoder or MiniLMEncoder()
    CACHE.mkdir(exist_ok=True)
    key = cache_key(encoder)
    parts = []
    for part in ("corpus", "queries" if split == "test" else f"queries-{split}"):
        path = CACHE / f"{name}.{part}.{key}.npz"
        if path.exists():
            z = np.load(path, allow_pickle=False)
            parts.append(Embedded(list(z["ids"]), z["vectors"], z["token_ids"], z["offsets"], z["dense"]))
            continue
        if part == "corpus":
            ids, texts = collection.passages()
        else:
            ids, texts = list(collection.queries), list(collection.queries.values())
        e = _embed(encoder, ids, texts, f"{name} {part}")
        np.savez(path, ids=np.array(e.ids), vectors=e.vectors, token_ids=e.token_ids, offsets=e.offsets, dense=e.dense)
        parts.append(e)
    return collection, parts[0], parts[1]


if __name__ == "__main__":
    for name in sys.argv[1:] or COLLECTIONS:
        load(name)
