"""Encoders: models that turn text into one vector per token (and one per passage)."""

from __future__ import annotations

import functools

from colcade.encoders.base import Encoded, EncodedQuery, Encoder, describe, pool
from colcade.encoders.precomputed import PrecomputedEncoder


@functools.lru_cache(maxsize=1)
def default_encoder() -> Encoder:
    """The encoder used when none is given: all-MiniLM-L6-v2, embedded and offline (one per process)."""
    from colcade.encoders.default import MiniLMEncoder

    return MiniLMEncoder()


__all__ = ["Encoded", "EncodedQuery", "Encoder", "PrecomputedEncoder", "default_encoder", "describe", "pool"]
