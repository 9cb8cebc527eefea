"""Synthetic late-interaction corpora for speed runs: shaped like real ones, made on the fly.

Each passage mixes a topic centre with words drawn from a shared vocabulary (as real token
vectors cluster by topic and repeat across passages); queries are noisy word subsets of a
passage. The dense shortlist then behaves as on real text; random unstructured vectors would
make any shortlist useless and any speed figure meaningless.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class Corpus:
    def __init__(self, n: int, dim: int = 128, tokens: int = 120, seed: int = 0) -> None:
        self.n, self.dim, self.tokens, self.seed = n, dim, tokens, seed
        rng = np.random.default_rng(seed)
        self.vocab = rng.standard_normal((30_000, dim)).astype(np.float32)
        self.topics = 1.5 * rng.standard_normal((max(8, n // 50), dim)).astype(np.float32)

    def batches(self, size: int) -> Iterator[list[np.ndarray]]:
        """Passages in batches of ``size``: lists of float16 ``[t, dim]`` (t around ``tokens``)."""
        rng = np.random.default_rng(self.seed + 1)
        for start in range(0, self.n, size):
            batch = []
            for _ in range(min(size, self.n - start)):
                t = int(rng.integers(self.tokens * 3 // 4, self.tokens * 5 // 4 + 1))
                v = self.vocab[rng.integers(len(self.vocab), size=t)] + self.topics[rng.integers(len(self.topics))]
                batch.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16))
            yield batch

    def queries(self, index_tokens: list[np.ndarray], count: int, length: int = 32) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed + 2)
        out = []
        for _ in range(count):
            source = index_tokens[rng.integers(len(index_tokens))].astype(np.float32)
            noise = 0.35 / np.sqrt(self.dim) * rng.standard_normal((length, self.dim)).astype(np.float32)
            q = source[rng.integers(len(source), size=length)] + noise  # 35% of a unit token
            out.append((q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))
        return out
