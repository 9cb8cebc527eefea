"""ColBERT models through fastembed (``pip install "colcade[fastembed]"``).

fastembed downloads its ONNX models from the Hugging Face hub once, then runs offline;
``specific_model_path`` points it at a folder you already have. The shortlist's dense vector
is the normalized mean of the token vectors, or a fastembed ``TextEmbedding`` model of your
choice (``dense_model="BAAI/bge-small-en-v1.5"``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from colcade.encoders.base import (
    Encoded,
    EncodedQuery,
    check_texts,
    fingerprint_of,
    normalize,
    pool,
    sha256_file,
    warn_truncated,
)
from colcade.errors import EncoderUnavailableError, InvalidInputError
from colcade.optional import require


class FastEmbedEncoder:
    """A fastembed late-interaction model (``colbert-ir/colbertv2.0``,
    ``answerdotai/answerai-colbert-small-v1``, ...) as a colcade encoder.

    >>> enc = FastEmbedEncoder("answerdotai/answerai-colbert-small-v1")   # doctest: +SKIP
    >>> enc.dim                                                           # doctest: +SKIP
    96
    """

    kind = "fastembed"

    def __init__(
        self,
        model_name: str = "colbert-ir/colbertv2.0",
        dense_model: str | None = None,
        cache_dir: str | None = None,
        threads: int | None = None,
        specific_model_path: str | None = None,
        batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        fastembed = require("fastembed", '"colcade[fastembed]"', "FastEmbedEncoder", EncoderUnavailableError)
        LateInteractionTextEmbedding, TextEmbedding = fastembed.LateInteractionTextEmbedding, fastembed.TextEmbedding
        try:
            self.model = LateInteractionTextEmbedding(
                model_name, cache_dir=cache_dir, threads=threads, specific_model_path=specific_model_path, **kwargs
            )
            self.dense = TextEmbedding(dense_model, cache_dir=cache_dir, threads=threads) if dense_model else None
        except Exception as exc:  # offline without a cached model, unknown name...
            raise EncoderUnavailableError(
                f"fastembed could not load {model_name!r}{' / ' + dense_model if dense_model else ''} ({exc}). "
                "It downloads from the Hugging Face hub once; offline, pass specific_model_path= to a model folder."
            ) from exc
        self.name = model_name
        self.batch_size = batch_size
        self.dim = int(next(iter(self.model.query_embed("dimension probe"))).shape[-1])
        self.dense_dim = int(next(iter(self.dense.embed(["dimension probe"]))).shape[-1]) if self.dense else self.dim
        self.config = {"model_name": model_name, "dense_model": dense_model, "specific_model_path": specific_model_path}

    @functools.cached_property
    def fingerprint(self) -> str:
        return fingerprint_of("fastembed", self.name, self.config["dense_model"], self.dim, self._model_digest())

    def _model_digest(self) -> str:
        """sha256 of the ONNX files in the model folder (the weights in use, wherever they came from)."""
        folder = getattr(getattr(self.model, "model", None), "_model_dir", None)
        return fingerprint_of(*(sha256_file(f) for f in sorted(Path(folder).rglob("*.onnx")))) if folder else ""

    def _warn_truncated(self, texts: Sequence[str]) -> None:
        tokenizer = getattr(getattr(self.model, "model", None), "tokenizer", None)
        if tokenizer is None:
            return
        cut = sum(1 for e in tokenizer.encode_batch(list(texts)) if e.overflowing)
        limit = tokenizer.truncation["max_length"] if tokenizer.truncation else "its"
        warn_truncated(cut, len(texts), f"{limit}")

    def encode_documents(self, texts: Sequence[str]) -> Encoded:
        check_texts(texts)
        self._warn_truncated(texts)
        tokens = [normalize(t) for t in self.model.embed(list(texts), batch_size=self.batch_size)]
        if self.dense is not None:
            dense = normalize(np.stack(list(self.dense.embed(list(texts), batch_size=self.batch_size))))
        else:
            dense = np.stack([pool(t) for t in tokens]) if tokens else np.zeros((0, self.dim), np.float32)
        return Encoded(dense=dense, tokens=tokens)

    def encode_query(self, text: str) -> EncodedQuery:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("the query is empty; give it content")
        tokens = normalize(next(iter(self.model.query_embed(text))))  # fastembed leaves queries unnormalized
        dense = normalize(next(iter(self.dense.query_embed(text)))) if self.dense is not None else pool(tokens)
        return EncodedQuery(dense=dense, tokens=tokens)
