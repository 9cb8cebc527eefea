"""Your own vectors: ColPali / ColQwen page embeddings or any model colcade does not wrap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from colcade.encoders.base import Encoded, EncodedQuery, check_dense, check_tokens, fingerprint_of, pool
from colcade.errors import InvalidInputError

QueryFn = Callable[[str], "EncodedQuery | np.ndarray"]
DocumentFn = Callable[[Sequence[str]], "Encoded | Sequence[np.ndarray]"]


class PrecomputedEncoder:
    """An encoder for vectors you compute yourself.

    Pass token matrices to ``LateIndex.add(..., tokens=...)`` and query matrices to
    ``LateIndex.search(EncodedQuery(...))``, or give ``query_fn`` (and ``document_fn``) so that
    text works too, and ``image_fn`` (a list of images -> one ``[t, dim]`` matrix each) so that
    ``LateIndex.add(images=...)`` does: any model you run yourself (ColQwen2 on transformers).
    Without a dense vector, the mean of the token vectors is used.

    >>> import numpy as np
    >>> enc = PrecomputedEncoder(dim=128, name="colpali-v1.3")
    >>> enc.dim, enc.dense_dim
    (128, 128)
    """

    kind = "precomputed"

    def __init__(
        self,
        dim: int,
        dense_dim: int | None = None,
        name: str = "precomputed",
        query_fn: QueryFn | None = None,
        document_fn: DocumentFn | None = None,
        image_fn: Callable[[list[Any]], Sequence[Any]] | None = None,
    ) -> None:
        if int(dim) <= 0:
            raise InvalidInputError(f"dim must be a positive integer, but got {dim}")
        self.name = name
        self.dim = int(dim)
        self.dense_dim = int(dense_dim) if dense_dim is not None else self.dim
        self.query_fn = query_fn
        self.document_fn = document_fn
        self.image_fn = image_fn

    @property
    def embeds_images(self) -> bool:
        """Whether ``LateIndex.add(images=...)`` works: an ``image_fn`` was given."""
        return self.image_fn is not None

    @property
    def fingerprint(self) -> str:
        return fingerprint_of("precomputed", self.name, self.dim, self.dense_dim)

    def _no_model(self, what: str) -> InvalidInputError:
        return InvalidInputError(
            f"encoder {self.name!r} takes precomputed vectors and has no {what}: pass vectors "
            f"(LateIndex.add(..., tokens=...), LateIndex.search(EncodedQuery(...))) or give "
            f"PrecomputedEncoder a {what}"
        )

    def encode_documents(self, texts: Sequence[str]) -> Encoded:
        if self.document_fn is None:
            raise self._no_model("document_fn")
        out = self.document_fn(texts)
        if isinstance(out, Encoded):
            return out
        tokens = [check_tokens(t, self.dim, f"document_fn output {i}") for i, t in enumerate(out)]
        return Encoded(dense=np.stack([pool(t) for t in tokens]), tokens=tokens)

    def encode_images(self, images: Sequence[Any]) -> Encoded:
        if self.image_fn is None:
            raise self._no_model("image_fn")
        if not len(images):
            return Encoded(dense=np.zeros((0, self.dense_dim), np.float32), tokens=[])
        tokens = [check_tokens(t, self.dim, f"image_fn output {i}") for i, t in enumerate(self.image_fn(list(images)))]
        if len(tokens) != len(images):
            raise InvalidInputError(f"image_fn returned {len(tokens)} matrices for {len(images)} images")
        return Encoded(dense=np.stack([pool(t) for t in tokens]), tokens=tokens)

    def encode_query(self, text: str) -> EncodedQuery:
        if self.query_fn is None:
            raise self._no_model("query_fn")
        out = self.query_fn(text)
        if isinstance(out, EncodedQuery):
            return out
        tokens = check_tokens(out, self.dim, "query_fn output")
        return EncodedQuery(dense=pool(tokens), tokens=tokens)

    def query(self, tokens: np.ndarray, dense: np.ndarray | None = None) -> EncodedQuery:
        """Wrap a query's token matrix (and optional dense vector) for ``LateIndex.search``."""
        tokens = check_tokens(tokens, self.dim, "query tokens")
        dense = pool(tokens) if dense is None else check_dense(dense, 1, self.dense_dim, "query dense")[0]
        return EncodedQuery(dense=dense, tokens=tokens)
