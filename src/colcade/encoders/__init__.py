"""Encoders: models that turn text into one vector per token (and one per passage)."""

from colcade.encoders.base import Encoded, EncodedQuery, Encoder, describe, pool
from colcade.encoders.precomputed import PrecomputedEncoder
from colcade.errors import EncoderUnavailableError


def default_encoder() -> Encoder:
    """The encoder used when none is given."""
    raise EncoderUnavailableError(
        "colcade has no embedded default encoder yet: pass encoder=... (for example "
        "colcade.PrecomputedEncoder(dim=128) and your own vectors)"
    )


__all__ = ["Encoded", "EncodedQuery", "Encoder", "PrecomputedEncoder", "default_encoder", "describe", "pool"]
