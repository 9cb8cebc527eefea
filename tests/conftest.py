"""Shared test data: corpora of token vectors shaped like real ones, and a small text encoder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from colcade import EncodedQuery, PrecomputedEncoder
from colcade.encoders import pool

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def clustered_corpus(n: int, dim: int, seed: int = 0, lengths: np.ndarray | None = None):
    """Token vectors with topical structure: each passage mixes a topic centre with its words.

    Returns (tokens list of float32 [t_i, dim], queries list of float32 [q, dim]); queries are
    noisy token subsets of random passages, as real queries share words with their answers.
    """
    rng = np.random.default_rng(seed)
    vocab = rng.standard_normal((4 * n + 64, dim)).astype(np.float32)
    topics = rng.standard_normal((max(4, n // 20), dim)).astype(np.float32)
    if lengths is None:
        lengths = rng.integers(8, 160, size=n)
    tokens = []
    for length in lengths:
        topic = topics[rng.integers(len(topics))]
        t = vocab[rng.integers(len(vocab), size=int(length))] + 1.5 * topic
        tokens.append(t / np.linalg.norm(t, axis=1, keepdims=True))
    queries = []
    for _ in range(24):
        source = tokens[rng.integers(n)]
        q = source[rng.integers(len(source), size=rng.integers(3, 33))]
        q = q + 0.3 * rng.standard_normal(q.shape).astype(np.float32)
        queries.append((q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))
    return tokens, queries


def exhaustive_maxsim(query: np.ndarray, tokens: list[np.ndarray]) -> np.ndarray:
    """The definition, on the float16-rounded vectors the index stores."""
    q = query.astype(np.float32)
    return np.array([(q @ t.astype(np.float16).astype(np.float32).T).max(axis=1).sum() for t in tokens], np.float32)


def query_of(tokens: np.ndarray) -> EncodedQuery:
    return EncodedQuery(dense=pool(tokens), tokens=np.asarray(tokens, np.float32))


def _word_vector(word: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(word.lower().encode(), digest_size=8).digest(), "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def word_encoder(dim: int = 64) -> PrecomputedEncoder:
    """A real, tiny bag-of-words late-interaction encoder: one hashed unit vector per word."""

    def embed(text: str) -> np.ndarray:
        words = [w.strip(".,;:!?()\"'") for w in text.split()]
        return np.stack([_word_vector(w, dim) for w in words if w] or [_word_vector(text, dim)])

    return PrecomputedEncoder(
        dim=dim,
        name="hashed-words",
        query_fn=embed,
        document_fn=lambda texts: [embed(t) for t in texts],
    )


@pytest.fixture
def encoder() -> PrecomputedEncoder:
    return word_encoder()


def scifact_lengths(n: int) -> np.ndarray:
    """Token counts of real passages (SciFact words, capped like a 180-token model), when available."""
    path = SHARED_DATA / "scifact" / "corpus.jsonl"
    if not path.exists():
        pytest.skip("../shared/data/scifact is not available")
    lengths = []
    with open(path) as f:
        for line in f:
            doc = json.loads(line)
            lengths.append(min(180, max(1, len((doc.get("title", "") + " " + doc["text"]).split()))))
            if len(lengths) == n:
                break
    return np.array(lengths)
