"""ColBERT checkpoints (colbert-ir/colbertv2.0, answerai-colbert-small-v1, RAGatouille-trained
models, BERT-based PyLate models) without colbert-ai or torch: the BERT encoder and ColBERT's
linear projection run as one ONNX graph on onnxruntime (``onnx_bert.py``).

ColBERT's conventions, as colbert-ai and PyLate apply them: a ``[Q]`` / ``[D]`` marker after
``[CLS]``; queries padded with ``[MASK]`` to ``query_maxlen`` (query augmentation: the mask
positions are query vectors too); document punctuation tokens dropped; every vector
L2-normalized. Two layouts: colbert-ai's (``linear.weight`` beside the BERT weights,
``artifact.metadata``) and PyLate's (a sentence-transformers folder: the projection in
``1_Dense/``, markers, lengths, expansion and skiplist in ``config_sentence_transformers.json``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from colcade.encoders import onnx_modernbert
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
from colcade.encoders.onnx_bert import (
    LazySession,
    build_bert,
    check_bert,
    modern_names,
    read_safetensors,
    runtime,
    safetensors_names,
    unsupported,
)
from colcade.encoders.torch_backbone import TorchBackbone, check_config
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
    "modules.json",
    "config_sentence_transformers.json",
    "special_tokens_map.json",
    "*_Dense/*",
    "*.py",  # a model's own code, run only with trust_remote_code=True
]


def _pylate(path: Path) -> dict[str, Any] | None:
    """A PyLate (sentence-transformers) folder's projection and settings; None for another layout.

    The Dense modules after the transformer compose into one affine map (``weight``, ``bias``);
    an activation other than identity, or a residual, is refused by name.
    """
    if not (path / "modules.json").is_file():
        return None
    modules = json.loads((path / "modules.json").read_text())
    if any("Pooling" in m.get("type", "") for m in modules):
        raise EncoderUnavailableError(
            f"{path} is a single-vector sentence-transformers model (it pools its tokens), not a ColBERT one"
        )
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    for module in modules:
        if "Dense" not in module.get("type", ""):
            continue
        folder = path / module["path"]
        config = json.loads((folder / "config.json").read_text())
        activation = str(config.get("activation_function", "torch.nn.modules.linear.Identity"))
        if not activation.endswith("Identity") or config.get("use_residual"):
            raise EncoderUnavailableError(
                f"{folder}: a projection with activation {activation!r}"
                f"{' and a residual' if config.get('use_residual') else ''} is not supported (identity only)"
            )
        tensors, _ = _weights(folder)
        if "linear.weight" not in tensors:
            raise EncoderUnavailableError(f"{folder} holds no 'linear.weight': not a Dense projection colcade can read")
        w = np.asarray(tensors["linear.weight"], np.float64)
        b = np.asarray(tensors["linear.bias"], np.float64) if "linear.bias" in tensors else np.zeros(len(w))
        if weight is None or bias is None:
            weight, bias = w, b
        else:
            weight, bias = w @ weight, w @ bias + b
    if weight is None or bias is None:
        return None
    st_path = path / "config_sentence_transformers.json"
    settings = json.loads(st_path.read_text()) if st_path.is_file() else {}
    return {"weight": weight.astype(np.float32), "bias": bias.astype(np.float32), "settings": settings}


def resolve(model: str | Path) -> Path:
    """A local checkpoint folder, or a Hugging Face repo id downloaded once (needs a network)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or str(model).startswith((".", "~")):  # meant as a folder, not a hub id
        raise EncoderUnavailableError(f"no checkpoint folder at {path}")
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


def _weights_file(path: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return path / name
    raise EncoderUnavailableError(f"{path} holds no model.safetensors or pytorch_model.bin")


def _weights(path: Path, names: Any = None) -> tuple[dict[str, np.ndarray], Path]:
    """A folder's weights (all, or those in ``names``) as float32-readable arrays, and their file."""
    file = _weights_file(path)
    if file.suffix == ".safetensors":
        return read_safetensors(file, names), file
    torch = require("torch", "torch", f"reading {file} (no model.safetensors)", EncoderUnavailableError)
    state = torch.load(file, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in state.items() if names is None or k in names}, file


def _weight_names(file: Path) -> list[str]:
    return safetensors_names(file) if file.suffix == ".safetensors" else list(_weights(file.parent)[0])


def _special_ids(tokenizer: Any, path: Path, model_type: str) -> dict[str, int | None]:
    """The ids of the tokens ColBERT places: cls, sep, mask, pad, unk, by the tokenizer's own
    configuration (special_tokens_map.json, tokenizer_config.json), else BERT's or RoBERTa's."""
    defaults = {"cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]", "pad": "[PAD]", "unk": "[UNK]"}
    if model_type in ("roberta", "xlm-roberta", "camembert"):
        defaults = {"cls": "<s>", "sep": "</s>", "mask": "<mask>", "pad": "<pad>", "unk": "<unk>"}
    named: dict[str, Any] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (path / name).is_file():
            named.update(json.loads((path / name).read_text()))
    ids: dict[str, int | None] = {}
    for role, default in defaults.items():
        token = named.get(f"{role}_token") or default
        token = token.get("content", default) if isinstance(token, dict) else token
        ids[role] = tokenizer.token_to_id(token)
    return ids


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
    """A late-interaction checkpoint (ColBERT, PyLate, sentence-transformers) as a colcade encoder.

    ``model``: a local folder or a Hugging Face repo id such as ``"colbert-ir/colbertv2.0"``
    (downloaded once, where a network is available). Two layouts: colbert-ai's (the weights with
    a ``linear`` projection, ``artifact.metadata``) and PyLate's (a sentence-transformers folder,
    the projection in ``1_Dense/``). Backbones: BERT, XLM-RoBERTa and ModernBERT run on
    onnxruntime with no torch; rotary XLM-RoBERTa (jina-colbert-v2) and anything else
    transformers loads run on torch (``pip install "colcade[torch]"``). ``backend`` (``"auto"``, ``"onnxruntime"``,
    ``"torch"``) overrides that choice; ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``) where it
    runs (default: a GPU where there is one); ``trust_remote_code`` lets transformers run a
    checkpoint's own modelling code. ``runtime`` says what was chosen. ``query_maxlen`` and
    ``doc_maxlen`` default to the checkpoint's own settings. fp32, fp16 and bf16 weights load.

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
        *,
        backend: str = "auto",
        device: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if backend not in ("auto", "onnxruntime", "torch"):
            raise InvalidInputError(f"unknown backend {backend!r}: use 'auto', 'onnxruntime' or 'torch'")
        self.path = resolve(model)
        if not (self.path / "config.json").is_file():
            raise EncoderUnavailableError(f"{self.path} has no config.json: not a transformers checkpoint")
        bert_config = json.loads((self.path / "config.json").read_text())
        meta_path = self.path / "artifact.metadata"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self._weights_file = _weights_file(self.path)
        names = _weight_names(self._weights_file)
        # colbert-ai's layout first: a folder that holds both (a converted checkpoint) reads as it
        # always did, with the same fingerprint.
        pylate = None if "linear.weight" in names else _pylate(self.path)
        if pylate is None and "linear.weight" not in names:
            raise EncoderUnavailableError(
                f"{self.path} is not a ColBERT checkpoint: it has no 'linear.weight' projection "
                "(colbert-ai's layout) and no Dense module in modules.json (PyLate's)"
            )
        modernbert = bert_config.get("model_type") == "modernbert"
        reason = onnx_modernbert.unsupported(bert_config) if modernbert else unsupported(bert_config)
        if backend == "onnxruntime" and reason:
            raise EncoderUnavailableError(f"{self.path} cannot run on onnxruntime: {reason}; use backend='torch'")
        self.backend = "onnxruntime" if backend == "auto" and not reason else backend
        if self.backend == "auto":
            self.backend = "torch"
        if self.backend == "onnxruntime":  # every weight read now, and checked before any folder is written
            weights = modern_names(_weights(self.path)[0])
            (onnx_modernbert.check_modernbert if modernbert else check_bert)(weights, bert_config, self.path)
        else:
            weights = _weights(self.path, {"linear.weight"})[0] if pylate is None else {}
            why = f"{self.path} ({reason}, so it runs on torch)" if reason else f"{self.path} on the torch backend"
            check_config(
                self.path, names if self._weights_file.suffix == ".safetensors" else None, trust_remote_code, why
            )
        if pylate is not None:
            self._projection, self._projection_bias = pylate["weight"], pylate["bias"]
            settings = pylate["settings"]
            meta = {
                "query_maxlen": settings.get("query_length"),
                "doc_maxlen": settings.get("document_length"),
                "attend_to_mask_tokens": settings.get("attend_to_expansion_tokens", False),
                "query_token_id": settings.get("query_prefix", "[Q] "),
                "doc_token_id": settings.get("document_prefix", "[D] "),
            }
            meta = {k: v for k, v in meta.items() if v is not None}
            self.layout = "pylate"
        else:
            self._projection = np.asarray(weights["linear.weight"], np.float32)
            self._projection_bias = None
            settings = {}
            self.layout = "colbert-ai"
        self.name = str(model)
        self.dim = self.dense_dim = int(self._projection.shape[0])
        self.query_maxlen = int(query_maxlen or meta.get("query_maxlen", 32))
        self.doc_maxlen = int(doc_maxlen or meta.get("doc_maxlen", 180))
        self.expand_queries = bool(settings.get("do_query_expansion", True))
        limit = bert_config.get("max_position_embeddings", 512)
        if bert_config.get("model_type") in ("roberta", "xlm-roberta"):
            limit -= bert_config.get("pad_token_id", 1) + 1  # RoBERTa's positions start after the padding index
        for what, value in (("query_maxlen", self.query_maxlen), ("doc_maxlen", self.doc_maxlen)):
            if not 4 <= value <= limit:
                raise InvalidInputError(f"{what} must be in 4..{limit}, but got {value}")
        self.attend_to_mask_tokens = bool(meta.get("attend_to_mask_tokens", False))
        self.threads, self.batch_size = threads, batch_size
        self.config: dict[str, Any] = {
            "model": str(model),
            "query_maxlen": self.query_maxlen,
            "doc_maxlen": self.doc_maxlen,
        }
        if trust_remote_code:  # so that LateIndex.open rebuilds it as it was made
            self.config["trust_remote_code"] = True

        self.tokenizer = _tokenizer(self.path)
        ids = _special_ids(self.tokenizer, self.path, str(bert_config.get("model_type", "bert")))
        markers = {}
        for side, default in (("query_token_id", "[unused0]"), ("doc_token_id", "[unused1]")):
            token = meta.get(side, default)
            # PyLate's empty prefix means no marker; a prefix it added to the vocabulary may
            # keep its trailing space ("[Q] ") in the tokenizer's added tokens, or not.
            markers[side] = None if token == "" else self.tokenizer.token_to_id(token)
            if token and markers[side] is None:
                markers[side] = self.tokenizer.token_to_id(token.strip())
            if token and markers[side] is None:
                raise EncoderUnavailableError(f"the tokenizer of {self.path} lacks the marker {token!r}")
        lacking = [role for role in ("cls", "sep", "mask", "pad") if ids[role] is None]
        if lacking:
            raise EncoderUnavailableError(
                f"the tokenizer of {self.path} lacks the {', '.join(lacking)} token(s) ColBERT places; name them in "
                "its tokenizer_config.json (cls_token, sep_token, mask_token, pad_token)"
            )
        self._cls, self._sep, self._mask, self._pad = (int(ids[r]) for r in ("cls", "sep", "mask", "pad"))  # type: ignore[arg-type]
        self._q_marker, self._d_marker = markers["query_token_id"], markers["doc_token_id"]
        if self.layout == "pylate":  # as PyLate maps its skiplist: whole vocabulary entries, else [UNK]
            unk = ids["unk"]
            lookup = (self.tokenizer.token_to_id(w) for w in settings.get("skiplist_words", list(string.punctuation)))
            self._skip: set[int] = {i for i in (unk if i is None else i for i in lookup) if i is not None}
        else:
            self._skip = {
                i for c in string.punctuation for i in self.tokenizer.encode(c, add_special_tokens=False).ids[:1]
            }
        used = (
            "query_prefix",
            "document_prefix",
            "query_length",
            "document_length",
            "do_query_expansion",
            "attend_to_expansion_tokens",
            "skiplist_words",
        )
        self._settings = {k: settings.get(k) for k in used}  # what changes vectors, for the fingerprint
        self._run: Any
        if self.backend == "onnxruntime":
            build = onnx_modernbert.build_modernbert if modernbert else build_bert
            self._run = LazySession(
                lambda: build(weights, bert_config, self._projection, self._projection_bias), threads, device
            )
            self.runtime = runtime(device)
        else:
            bfloat16 = str(bert_config.get("dtype", bert_config.get("torch_dtype"))) == "bfloat16"
            self._run = TorchBackbone(
                self.path, self._projection, self._projection_bias, device, threads, trust_remote_code, bfloat16
            )
            self.runtime = f"torch ({self._run.device})"

    @functools.cached_property
    def fingerprint(self) -> str:
        parts: list[Any] = ["colbert", sha256_file(self._weights_file), self.query_maxlen, self.doc_maxlen]
        if self.layout == "pylate":  # its projection and settings live outside the weights hashed above
            projection = self._projection.tobytes() + np.asarray(self._projection_bias).tobytes()
            parts += [hashlib.sha256(projection).hexdigest(), self._settings]
        return fingerprint_of(*parts)  # colbert-ai layout: as before, so existing indexes reopen

    def _ids(self, text: str, marker: int | None, maxlen: int) -> tuple[list[int], bool]:
        body = self.tokenizer.encode(text, add_special_tokens=False).ids
        room = maxlen - (3 if marker is not None else 2)
        head = [self._cls] if marker is None else [self._cls, marker]
        return [*head, *body[:room], self._sep], len(body) > room

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
        expansion = self.query_maxlen - real if self.expand_queries else 0
        ids = np.array([row + [self._mask] * expansion], np.int64)
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
        if is_query and self.expand_queries:
            ids = ids + [self._mask] * (self.query_maxlen - len(ids))
        elif not is_query:  # documents drop their skiplist; queries keep every token
            ids = [i for i in ids if i not in self._skip]
        names = {m: n for m, n in ((self._q_marker, "[Q]"), (self._d_marker, "[D]")) if m is not None}
        return [names.get(i) or self.tokenizer.id_to_token(i) for i in ids]

    def count_tokens(self, text: str) -> int:
        """Tokens a document takes, markers and special tokens included (before truncation)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids) + (3 if self._d_marker is not None else 2)
