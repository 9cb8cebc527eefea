"""Where an index lives, as one string: a folder (a ``LateIndex``) or a Qdrant collection.

The command line, the RAGatouille facade and the retrievers' ``from_index`` take these:

    ./my-index                          a LateIndex folder
    qdrant://localhost:6333/docs        collection "docs" on a Qdrant server (HTTP)
    qdrants://xyz.cloud.qdrant.io/docs  the same over HTTPS (the API key from QDRANT_API_KEY)
    qdrant-local:./qdrant-data/docs     collection "docs" in Qdrant's local mode folder ./qdrant-data
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from colcade.encoders import Encoder
from colcade.errors import InvalidInputError

if TYPE_CHECKING:
    from colcade.index import LateIndex
    from colcade.qdrant import QdrantIndex

SCHEMES = ("qdrant://", "qdrants://", "qdrant-local:")


def is_qdrant(location: Any) -> bool:
    return isinstance(location, str) and location.startswith(SCHEMES)


def qdrant_parts(location: str) -> tuple[str, str]:
    """(what ``QdrantIndex`` takes as its location, the collection) of a ``qdrant...`` location.

    >>> qdrant_parts("qdrant://localhost:6333/docs")
    ('http://localhost:6333', 'docs')
    >>> qdrant_parts("qdrants://example.cloud/docs")
    ('https://example.cloud', 'docs')
    >>> qdrant_parts("qdrant-local:data/qdrant/docs")
    ('data/qdrant', 'docs')
    """
    if location.startswith("qdrant-local:"):
        folder, _, collection = location[len("qdrant-local:") :].rstrip("/").rpartition("/")
        where = folder or "."
    else:
        parts = urlsplit(location)
        collection = parts.path.strip("/")
        where = f"{'https' if parts.scheme == 'qdrants' else 'http'}://{parts.netloc}"
        if not parts.netloc:
            collection = ""
    if not collection or "/" in collection:
        raise InvalidInputError(
            f"{location!r} names no collection: write qdrant://HOST:PORT/COLLECTION or qdrant-local:FOLDER/COLLECTION"
        )
    return where, collection


def open_index(location: str | os.PathLike[str], encoder: Encoder | None = None) -> LateIndex | QdrantIndex:
    """The index at ``location`` (see the module's docstring), opened with ``encoder`` (or the one
    it records)."""
    if is_qdrant(location):
        from colcade.qdrant import QdrantIndex

        where, collection = qdrant_parts(str(location))
        return QdrantIndex.open(where, collection, encoder)
    from colcade.index import LateIndex

    return LateIndex.open(location, encoder)
