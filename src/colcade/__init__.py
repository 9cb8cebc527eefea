"""colcade: late-interaction (ColBERT, ColPali) retrieval for RAG.

>>> from colcade import LateIndex, PrecomputedEncoder
"""

from colcade.encoders import Encoded, EncodedQuery, Encoder, PrecomputedEncoder
from colcade.errors import (
    BackendUnavailableError,
    ColcadeError,
    CorruptIndexError,
    DuplicateIdError,
    EncoderMismatchError,
    EncoderUnavailableError,
    FilterError,
    IndexClosedError,
    IndexExistsError,
    IndexLockedError,
    IndexNotFoundError,
    InvalidInputError,
    StorageError,
    UnknownIdError,
)
from colcade.index import LateIndex
from colcade.results import Hit, Hits, IndexStats, StageStats

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "ColcadeError",
    "CorruptIndexError",
    "DuplicateIdError",
    "Encoded",
    "EncodedQuery",
    "Encoder",
    "EncoderMismatchError",
    "EncoderUnavailableError",
    "FilterError",
    "Hit",
    "Hits",
    "IndexClosedError",
    "IndexExistsError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexStats",
    "InvalidInputError",
    "LateIndex",
    "PrecomputedEncoder",
    "StageStats",
    "StorageError",
    "UnknownIdError",
]
