"""ColBERT checkpoints (colbert-ir/colbertv2.0, answerai-colbert-small-v1, RAGatouille-trained
models) without colbert-ai or torch: the BERT encoder and ColBERT's linear projection run as
one ONNX graph on onnxruntime (``onnx_bert.py``).

ColBERT's conventions, as colbert-ai applies them: a ``[Q]`` / ``[D]`` marker after ``[CLS]``;
queries padded with ``[MASK]`` to ``query_maxlen`` (query augmentation: the mask positions
are query vectors too); document punctuation tokens dropped; every vector L2-normalized.
"""

from __future__ import annotations

import functools
import json
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from colcade.encoders.base import (
    Encoded,
    EncodedQuery,
    check_texts,
    fingerprint_of,
    length_batches,
    normalize,
    pad,
    pool,
    sha256_file,
    warn_truncated,
)
from colcade.encoders.onnx_bert import LazySession, build_bert, check_bert, read_safetensors
from colcade.errors import EncoderUnavailableError, InvalidInputError
from colcade.optional import require

_FILES = [
    "config.json",
    "artifact.metadata",
    "model.safetensors",
    "pytorch_model.bin",
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
]


def resolve(model: str | Path) -> Path:
    """A local checkpoint folder, or a Hugging Face repo id downloaded once (needs a network)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    snapshot_download = require(
        "huggingface_hub", "huggingface_hub", f"downloading {model!r} (not a local folder)", EncoderUnavailableError
    ).snapshot_download
    try:
        return Path(snapshot_download(str(model), allow_patterns=_FILES))
    except Exception as exc:  # offline, unknown repo, gated model
        raise EncoderUnavailableError(
            f"cannot load ColBERT checkpoint {model!r}: it is not a local folder and the download failed ({exc}). "
            "Download it where you have a network and pass the folder."
        ) from exc


def _weights(path: Path) -> tuple[dict[str, np.ndarray], Path]:
    if (path / "model.safetensors").is_file():
        return read_safetensors(path / "model.safetensors"), path / "model.safetensors"
    if (path / "pytorch_model.bin").is_file():
        torch = require(
            "torch", "torch", f"reading {path / 'pytorch_model.bin'} (no model.safetensors)", EncoderUnavailableError
        )
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return {k: v.float().numpy() for k, v in state.items()}, path / "pytorch_model.bin"
    raise EncoderUnavailableError(f"{path} holds no model.safetensors or pytorch_model.bin")


def _tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer  # type: ignore[attr-defined]

    tokenizer: Any
    if (path / "tokenizer.json").is_file():
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    elif (path / "vocab.txt").is_file():
        lowercase = (
            json.loads((path / "tokenizer_config.json").read_text()).get("do_lower_case", True)
            if (path / "tokenizer_config.json").is_file()
            else True
        )
        tokenizer = BertWordPieceTokenizer(str(path / "vocab.txt"), lowercase=lowercase)
    else:
        raise EncoderUnavailableError(f"{path} has no tokenizer.json or vocab.txt")
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class ColBERTEncoder:
    """A ColBERT checkpoint as a colcade encoder.

    ``model``: a local folder (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``,
    ``tokenizer.json`` or ``vocab.txt``, and ColBERT's ``artifact.metadata``) or a Hugging Face
    repo id such as ``"colbert-ir/colbertv2.0"`` (downloaded once, where a network is available).
    ``query_maxlen`` and ``doc_maxlen`` default to the checkpoint's own settings.

    >>> enc = ColBERTEncoder("colbert-ir/colbertv2.0")     # doctest: +SKIP
    >>> enc.encode_query("what is late interaction?").tokens.shape  # doctest: +SKIP
    (32, 128)
    """

    kind = "colbert"

    def __init__(
        self,
        model: str | Path,
        query_maxlen: int | None = None,
        doc_maxlen: int | None = None,
        threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        self.path = resolve(model)
        bert_config = json.loads((self.path / "config.json").read_text())
        meta_path = self.path / "artifact.metadata"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        weights, self._weights_file = _weights(self.path)
        if "linear.weight" not in weights:
            raise EncoderUnavailableError(
                f"{self.path} is not a ColBERT checkpoint: it has no 'linear.weight' projection"
            )
        check_bert(weights, bert_config, self.path)  # now, not at the first encode
        self._projection = np.asarray(weights["linear.weight"], np.float32)
        self._weights = weights
        self._bert_config = bert_config
        self.name = str(model)
        self.dim = self.dense_dim = int(self._projection.shape[0])
        self.query_maxlen = int(query_maxlen or meta.get("query_maxlen", 32))
        self.doc_maxlen = int(doc_maxlen or meta.get("doc_maxlen", 180))
        limit = bert_config.get("max_position_embeddings", 512)
        for what, value in (("query_maxlen", self.query_maxlen), ("doc_maxlen", self.doc_maxlen)):
            if not 4 <= value <= limit:
                raise InvalidInputError(f"{what} must be in 4..{limit}, but got {value}")
        self.attend_to_mask_tokens = bool(meta.get("attend_to_mask_tokens", False))
        self.threads, self.batch_size = threads, batch_size
        self.config = {"model": str(model), "query_maxlen": self.query_maxlen, "doc_maxlen": self.doc_maxlen}

        self.tokenizer = _tokenizer(self.path)
        ids = {t: self.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[MASK]", "[PAD]")}
        q_marker = self.tokenizer.token_to_id(meta.get("query_token_id", "[unused0]"))
        d_marker = self.tokenizer.token_to_id(meta.get("doc_token_id", "[unused1]"))
        if None in ids.values() or q_marker is None or d_marker is None:
            raise EncoderUnavailableError(
                f"the tokenizer of {self.path} lacks BERT's special tokens or ColBERT's markers"
            )
        self._cls, self._sep, self._mask, self._pad = ids["[CLS]"], ids["[SEP]"], ids["[MASK]"], ids["[PAD]"]
        self._q_marker, self._d_marker = q_marker, d_marker
        self._skip = {i for c in string.punctuation for i in self.tokenizer.encode(c, add_special_tokens=False).ids[:1]}
        self._run = LazySession(lambda: build_bert(self._weights, self._bert_config, self._projection), threads)

    @functools.cached_property
    def fingerprint(self) -> str:
        return fingerprint_of("colbert", sha256_file(self._weights_file), self.query_maxlen, self.doc_maxlen)

    def _ids(self, text: str, marker: int, maxlen: int) -> tuple[list[int], bool]:
        body = self.tokenizer.encode(text, add_special_tokens=False).ids
        return [self._cls, marker, *body[: maxlen - 3], self._sep], len(body) > maxlen - 3

    def encode_documents(self, texts: Sequence[str]) -> Encoded:
        """Document vectors: ``[D]``-marked, punctuation dropped, truncated at ``doc_maxlen``."""
        check_texts(texts)
        tokens: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
        rows = [self._ids(t, self._d_marker, self.doc_maxlen) for t in texts]
        truncated = sum(cut for _, cut in rows)
        for batch in length_batches([len(r) for r, _ in rows], self.batch_size):
            ids, _ = pad([rows[i][0] for i in batch], self._pad)
            out = self._run(ids, (ids != self._pad).astype(np.int64))
            for j, i in enumerate(batch):
                keep = (ids[j] != self._pad) & ~np.isin(ids[j], list(self._skip))
                vectors = out[j][keep]
                tokens[i] = normalize(vectors)
        warn_truncated(truncated, len(texts), f"doc_maxlen={self.doc_maxlen}")
        return Encoded(
            dense=np.stack([pool(t) for t in tokens]) if tokens else np.zeros((0, self.dim), np.float32), tokens=tokens
        )

    def encode_query(self, text: str) -> EncodedQuery:
        """Query vectors: ``[Q]``-marked and padded with ``[MASK]`` to ``query_maxlen`` (all kept)."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("the query is empty; give it content")
        row, _ = self._ids(text, self._q_marker, self.query_maxlen)
        real = len(row)
        ids = np.array([row + [self._mask] * (self.query_maxlen - real)], np.int64)
        mask = (
            np.ones_like(ids) if self.attend_to_mask_tokens else (np.arange(ids.shape[1]) < real).astype(np.int64)[None]
        )
        out = self._run(ids, mask)[0]
        out = normalize(out)
        return EncodedQuery(dense=pool(out[:real]), tokens=out)

    def token_strings(self, text: str, is_query: bool = False) -> list[str]:
        """The tokens behind each row of this text's token vectors (for explanations)."""
        marker = self._q_marker if is_query else self._d_marker
        ids, _ = self._ids(text, marker, self.query_maxlen if is_query else self.doc_maxlen)
        if is_query:
            ids = ids + [self._mask] * (self.query_maxlen - len(ids))
        else:
            ids = [i for i in ids if i not in self._skip]
        names = {self._q_marker: "[Q]", self._d_marker: "[D]"}
        return [names.get(i) or self.tokenizer.id_to_token(i) for i in ids]

    def count_tokens(self, text: str) -> int:
        """Tokens a document takes, markers and special tokens included (before truncation)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids) + 3
