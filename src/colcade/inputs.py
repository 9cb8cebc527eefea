"""Checks on what users pass in (ids, texts, metadata, vectors), shared by every index backend.

Each raises ``InvalidInputError`` (or ``DuplicateIdError``) naming the passage and what to do,
before anything is encoded or written.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from colcade.encoders.base import check_tokens
from colcade.errors import DuplicateIdError, InvalidInputError
from colcade.storage.segments import FLOAT16_MAX
from colcade.storage.store import to_json


def count_passages(texts: Sequence[str] | None, tokens: Sequence[Any] | None, what: str = "token matrices") -> int:
    """How many passages a write holds: ``texts``, and ``tokens`` (or images: ``what``) alike."""
    if texts is None and tokens is None:
        raise InvalidInputError("give texts to encode, or precomputed tokens= (one [t, dim] matrix per passage)")
    if isinstance(texts, str):
        raise InvalidInputError("texts must be a list of strings, not one string: wrap it as [text]")
    if texts is not None and tokens is not None and len(texts) != len(tokens):
        raise InvalidInputError(f"got {len(texts)} texts but {len(tokens)} {what}")
    if texts is not None:
        return len(texts)
    assert tokens is not None
    return len(tokens)


def check_unicode(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid Unicode ({exc.reason} at position {exc.start}); "
            "decode the source with errors='replace' or drop the character"
        ) from None


def passage_bytes(ids: list[str], texts: list[str], tokens: Any, dense: np.ndarray | None, i: int) -> bytes:
    """What identifies passage ``i`` of a write, for checking a checkpoint before resuming it."""
    parts = [ids[i].encode(), texts[i].encode()]
    if tokens is not None:
        parts.append(np.ascontiguousarray(tokens[i], np.float32).tobytes())
    if dense is not None:
        parts.append(dense[i].tobytes())
    return b"\0".join(len(p).to_bytes(8, "little") + p for p in parts)


def check_json_strings(value: Any, where: str) -> None:
    """Metadata keys must be strings, and no string may hold a NUL (SQLite's JSON stops at it)."""
    if isinstance(value, str):
        if "\0" in value:
            raise InvalidInputError(f"{where} holds a NUL character, which filters cannot match; remove it")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{where} has the key {key!r}; metadata keys must be strings")
            check_json_strings(key, where)
            check_json_strings(item, where)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_json_strings(item, where)


def storable(tokens: Any, dim: int, id_: str) -> np.ndarray:
    """Token vectors checked for the float16 they are stored in (past +-65504 they would be inf).

    float16 input stays float16 (it is what the index stores: no float32 copy); any other
    comes back float32."""
    if isinstance(tokens, np.ndarray) and tokens.dtype == np.float16 and tokens.ndim == 2 and len(tokens):
        if tokens.shape[1] == dim and np.isfinite(tokens).all():
            return tokens
    array = check_tokens(tokens, dim, f"token vectors of passage {id_!r}")
    peak = float(np.abs(array).max())
    if peak > FLOAT16_MAX:
        raise InvalidInputError(
            f"token vectors of passage {id_!r} reach {peak:.4g}, beyond float16's range "
            f"(+-{FLOAT16_MAX:.0f}) in which the index stores them; L2-normalize or scale them"
        )
    return array


def id_list(ids: Any, verb: str) -> list[str]:
    if ids is None or isinstance(ids, (str, bytes, dict)) or not hasattr(ids, "__iter__"):
        raise InvalidInputError(
            f"{verb} takes a list of ids, but got {ids!r}" + (": wrap it as [id]" if isinstance(ids, str) else "")
        )
    out: list[str] = list(ids)
    for i in out:
        if not isinstance(i, str) or not i:
            raise InvalidInputError(f"ids must be non-empty strings, but got {i!r}")
        check_unicode(i, f"id {i!r}")
    return out


def check_texts(texts: Sequence[str] | None, n: int, required: bool, ids: list[str]) -> list[str]:
    if texts is None:
        return [""] * n
    out = []
    for i, text in enumerate(texts):
        which = f"text {i} (id {ids[i]!r})"
        if not isinstance(text, str):
            raise InvalidInputError(f"{which} must be a string, but got {type(text).__name__}")
        if required and not text.strip():
            raise InvalidInputError(f"{which} is empty or whitespace only; remove it or give it content")
        check_unicode(text, which)
        out.append(text)
    return out


def check_ids(ids: Sequence[str] | None, n: int) -> list[str]:
    if ids is None:
        return [uuid.uuid4().hex for _ in range(n)]
    if isinstance(ids, str):
        raise InvalidInputError("ids must be a list of strings, not one string: wrap it as [id]")
    ids = list(ids)
    if len(ids) != n:
        raise InvalidInputError(f"got {len(ids)} ids for {n} passages")
    for i in ids:
        if not isinstance(i, str) or not i:
            raise InvalidInputError(f"ids must be non-empty strings, but got {i!r}")
        check_unicode(i, f"id {i!r}")
    if len(set(ids)) != len(ids):
        seen, dupes = set(), []
        for i in ids:
            if i in seen:
                dupes.append(i)
            seen.add(i)
        raise DuplicateIdError(f"ids repeat within one call: {', '.join(repr(i) for i in dupes[:5])}")
    return ids


def check_metadatas(metadatas: Sequence[dict[str, Any]] | None, n: int, ids: list[str]) -> list[dict[str, Any]]:
    if metadatas is None:
        return [{} for _ in range(n)]
    if isinstance(metadatas, dict):
        raise InvalidInputError(
            "metadatas must be a list of dicts, one per passage, not one dict: wrap it as [metadata]"
        )
    metadatas = list(metadatas)
    if len(metadatas) != n:
        raise InvalidInputError(f"got {len(metadatas)} metadatas for {n} passages")
    for i, m in enumerate(metadatas):
        if not isinstance(m, dict):
            raise InvalidInputError(f"metadata {i} must be a dict, but got {type(m).__name__}")
        check_json_strings(m, f"metadata of {ids[i]!r}")
        check_unicode(to_json(m, ids[i]), f"metadata of {ids[i]!r}")  # fails here, not after encoding
    return metadatas


def check_images(encoder: Any, images: Sequence[Any], tokens: Sequence[np.ndarray] | None) -> list[Any]:
    """``images`` as a list, for an encoder that embeds images, or an InvalidInputError."""
    if tokens is not None:
        raise InvalidInputError("give images or tokens, not both")
    if not getattr(encoder, "embeds_images", False):
        raise InvalidInputError(
            f"this index's encoder ({encoder.name!r}) does not embed images: create the index with one that does "
            "(colcade.encoders.multimodal.FastEmbedMultimodalEncoder, PrecomputedEncoder(image_fn=...)), "
            "or pass your vectors as tokens="
        )
    if isinstance(images, (str, bytes, os.PathLike)) or hasattr(images, "convert"):  # a path, or a PIL image
        raise InvalidInputError("images must be a list, not one image: wrap it as [image]")
    return list(images)
