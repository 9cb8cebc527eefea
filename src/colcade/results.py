"""Search results: small typed objects that read well in a notebook."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Hit:
    """One retrieved passage. ``score`` is the MaxSim sum; ``normalized_score`` divides it by
    the number of query tokens (comparable across queries, for thresholds). In a hybrid search
    ``score`` is the fused score (``engine/fusion.py``) and ``normalized_score`` puts it in [0, 1]."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any]
    normalized_score: float

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return f"Hit(id={self.id!r}, score={self.score:.3f}, text={text!r})"


@dataclass(frozen=True)
class StageStats:
    """What one cascade stage did: how many passages it took in, kept, and its time."""

    name: str
    candidates_in: int
    candidates_out: int
    ms: float

    def __str__(self) -> str:
        return f"{self.name} {self.candidates_in}->{self.candidates_out} in {self.ms:.2f} ms"


class Hits(list[Hit]):
    """The hits of one search, best first, with ``stats``: per-stage counts and timings."""

    def __init__(self, hits: list[Hit], stats: list[StageStats]) -> None:
        super().__init__(hits)
        self.stats = stats

    @property
    def total_ms(self) -> float:
        return sum(s.ms for s in self.stats)

    def stages(self) -> str:
        """The stages in one line: ``shortlist 1000->1000 in 0.01 ms, prefilter ...``."""
        return ", ".join(str(s) for s in self.stats)

    def __repr__(self) -> str:
        return f"Hits({list.__repr__(self)}, stats=[{self.stages()}])"


@dataclass
class IndexStats:
    """What an index holds, for ``LateIndex.stats()`` and ``colcade info``."""

    documents: int
    deleted: int
    tokens: int
    segments: int
    encoder: dict[str, Any]
    bytes_on_disk: int
    shortlist: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Passages:
    """A batch of stored passages with their vectors (``LateIndex.passages``): ``tokens`` float32
    ``[t_i, dim]`` a passage, ``dense`` float32 ``[n, dense_dim]``."""

    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    tokens: list[np.ndarray]
    dense: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)
