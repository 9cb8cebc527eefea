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


def from_manifest(info: dict) -> Encoder:
    """Rebuild the encoder an index records in its manifest (kinds colcade knows)."""
    from colcade.errors import EncoderMismatchError

    kind, config = info.get("kind"), info.get("config") or {}
    if kind == "precomputed":
        return PrecomputedEncoder(dim=info["dim"], dense_dim=info["dense_dim"], name=info["name"])
    if kind == "minilm" and (not config or config == getattr(default_encoder(), "config", None)):
        encoder = default_encoder()  # shared: one model session per process, however many indexes
    elif kind == "minilm":
        from colcade.encoders.default import MiniLMEncoder

        encoder = MiniLMEncoder(**config)
    elif kind == "colbert":
        from colcade.encoders.colbert import ColBERTEncoder

        encoder = ColBERTEncoder(**config)
    elif kind == "fastembed":
        from colcade.encoders.fastembed import FastEmbedEncoder

        encoder = FastEmbedEncoder(**config)
    else:
        raise EncoderMismatchError(
            f"this index was built with encoder {info['name']!r} (kind {kind!r}), which colcade cannot rebuild "
            "by itself: pass it, LateIndex.open(path, encoder=...)"
        )
    if encoder.fingerprint != info["fingerprint"]:
        raise EncoderMismatchError(
            f"this index was built with {info['name']!r} (fingerprint {info['fingerprint']}), but that model here "
            f"has fingerprint {encoder.fingerprint} (other weights or options): rebuild the index or pass the "
            "original encoder, LateIndex.open(path, encoder=...)"
        )
    return encoder


__all__ = ["Encoded", "EncodedQuery", "Encoder", "PrecomputedEncoder", "default_encoder", "describe", "from_manifest", "pool"]
