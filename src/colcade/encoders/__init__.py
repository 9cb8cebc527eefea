"""Encoders: models that turn text into one vector per token (and one per passage)."""

from __future__ import annotations

import functools
import importlib
from typing import Any

from colcade.encoders.base import Encoded, EncodedQuery, Encoder, describe, pool
from colcade.encoders.precomputed import PrecomputedEncoder
from colcade.errors import EncoderMismatchError, InvalidInputError

# The encoder kinds colcade knows, by the ``kind`` an index's manifest records; each class is
# imported on use, so an optional dependency (fastembed) is needed only by whoever uses it.
KINDS = {
    "minilm": ("colcade.encoders.default", "MiniLMEncoder"),
    "colbert": ("colcade.encoders.colbert", "ColBERTEncoder"),
    "fastembed": ("colcade.encoders.fastembed", "FastEmbedEncoder"),
    "fastembed-multimodal": ("colcade.encoders.multimodal", "FastEmbedMultimodalEncoder"),
    "precomputed": ("colcade.encoders.precomputed", "PrecomputedEncoder"),
}


def encoder_class(kind: str) -> Any:
    """The class of an encoder kind (``minilm``, ``colbert``, ``fastembed``, ``precomputed``)."""
    if kind not in KINDS:
        raise InvalidInputError(f"unknown encoder kind {kind!r}; colcade knows {', '.join(KINDS)}")
    module, name = KINDS[kind]
    return getattr(importlib.import_module(module), name)


def from_spec(spec: str | None) -> Encoder | None:
    """An encoder from a command-line spec: ``default`` (None), ``colbert:NAME_OR_PATH``, ``fastembed:MODEL``.

    >>> from_spec("default") is None
    True
    """
    if spec in (None, "default"):
        return None
    kind, _, name = spec.partition(":")
    if kind not in ("colbert", "fastembed") or not name:
        raise InvalidInputError(f"unknown encoder {spec!r}: use default, colbert:NAME_OR_PATH or fastembed:MODEL")
    encoder: Encoder = encoder_class(kind)(name)
    return encoder


@functools.lru_cache(maxsize=1)
def default_encoder() -> Encoder:
    """The encoder used when none is given: all-MiniLM-L6-v2, embedded and offline (one per process)."""
    from colcade.encoders.default import MiniLMEncoder

    return MiniLMEncoder()


def from_manifest(info: dict[str, Any]) -> Encoder:
    """Rebuild the encoder an index records in its manifest (kinds colcade knows)."""
    kind, config = info.get("kind"), info.get("config") or {}
    if kind == "minilm":  # an index whose config names no precision was built in float32
        config = {"precision": "float32", **config}
    if kind == "precomputed":
        return PrecomputedEncoder(dim=info["dim"], dense_dim=info["dense_dim"], name=info["name"])
    if kind == "minilm" and config == {"precision": "float32", **getattr(default_encoder(), "config", {})}:
        encoder = default_encoder()  # shared: one model session per process, however many indexes
    elif kind in KINDS:
        encoder = encoder_class(kind)(**config)
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


__all__ = [
    "KINDS",
    "Encoded",
    "EncodedQuery",
    "Encoder",
    "PrecomputedEncoder",
    "default_encoder",
    "describe",
    "encoder_class",
    "from_manifest",
    "from_spec",
    "pool",
]
