"""Immutable vector segments: how they are written (streamed, durably) and read (mapped, checked).

A segment is a folder of ``.npy`` files, memory-mapped when read. Exact (float16) segments::

    tokens.npy  float16 [T, d]          token vectors (rerank)
    bits.npy    uint8   [T, ceil(d/8)]  packed sign bits (prefilter)
    offsets.npy int64   [n + 1]         passage i owns rows offsets[i]:offsets[i+1]
    dense.npy   float32 [n, dense_dim]  one vector per passage (shortlist)
    keys.npy    int64   [n]             the docs.key of each passage, strictly ascending

Compressed segments (the default; ``colcade.engine.codec``) hold, instead of tokens and bits::

    codes.npy     uint16 [T]               each token's centroid
    residuals.npy uint8  [T, nbytes]       each token's residual buckets, packed (the codec's width:
                                           d * 1.75 / 8 by default, d / 4 in segments written before)
    codec.txt                              the name of the codec (``codecs/<name>/`` in the index)

and their dense vectors in 4 bits (``engine/dense_codes.py``: uint8 ``[n, dense_dim / 2 + 4]``, each
row's step in its last 4 bytes; 8 bits, int8 ``[n, dense_dim + 4]``, for an odd ``dense_dim`` and in
segments written before, as is float16 ``[n, dense_dim]``).

``SegmentWriter`` streams batches of passages to disk, so memory does not grow with the size
of an add: each array is appended to a ``.npy`` file whose header is rewritten with the final
shape when the writer finishes. Keys are written last, by the commit that lists the segment,
so they are allocated under the index's write lock. A writer can be made durable batch by
batch (``checkpoint``) and picked up again after a crash (``SegmentWriter.resume``).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from colcade.engine import dense_codes
from colcade.engine.codec import ResidualCodec
from colcade.engine.kernels import binarize
from colcade.engine.postings import Postings
from colcade.errors import CorruptIndexError, StorageError

FLOAT16_MAX = float(np.finfo(np.float16).max)
_STREAMED = ("tokens", "bits", "dense")
_ARRAYS = ("tokens", "bits", "offsets", "dense", "keys")
_COMPRESSED = ("codes", "residuals", "offsets", "dense", "keys")
_CODEC = "codec.txt"
CodecLoader = Callable[[str], ResidualCodec]
_HEADER = 128  # bytes: fixed, so the final shape can be written over the placeholder in place
_PROGRESS = "progress.json"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def storage_error(exc: OSError, what: str) -> StorageError:
    """A colcade error for a failed write, saying what to do (disk full gets its own words)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StorageError(
            f"{what} failed: the disk is full or a size limit was hit ({exc.strerror}). "
            "Nothing was committed and the index is as it was; free some space and retry."
        )
    return StorageError(f"{what} failed: {exc}. Nothing was committed and the index is as it was.")


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header padded to exactly ``_HEADER`` bytes."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
    body = text.encode("latin1").ljust(_HEADER - 10 - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


@dataclass(frozen=True)
class Segment:
    """The vectors of one batch of passages (arrays memory-mapped when on disk).

    Exact segments have ``tokens`` and ``bits``; compressed ones ``codes``, ``residuals`` and
    their ``codec`` (the other two fields are None).
    """

    name: str
    tokens: np.ndarray | None
    bits: np.ndarray | None
    offsets: np.ndarray
    dense: np.ndarray
    keys: np.ndarray
    codes: np.ndarray | None = None
    residuals: np.ndarray | None = None
    codec: ResidualCodec | None = None
    folder: Path | None = None  # where it lives on disk (None: in memory)

    @property
    def n(self) -> int:
        return len(self.keys)

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1]) if len(self.offsets) else 0

    @functools.cached_property
    def postings(self) -> Postings | None:
        """Each centroid's passages (compressed segments; built on first use, saved beside them)."""
        if self.codec is None:
            return None
        assert self.codes is not None
        return Postings.of(self.folder, self.codes, self.offsets, self.codec.k)

    def passage_tokens(self, i: int) -> np.ndarray:
        """Passage ``i``'s token vectors as stored (decoded when compressed), float32."""
        rows = slice(int(self.offsets[i]), int(self.offsets[i + 1]))
        if self.codec is not None:
            assert self.codes is not None and self.residuals is not None
            return self.codec.decode(self.codes[rows], self.residuals[rows])
        assert self.tokens is not None
        return np.asarray(self.tokens[rows], np.float32)

    @classmethod
    def read(cls, folder: Path, name: str, dim: int, dense_dim: int, codecs: CodecLoader | None = None) -> Segment:
        """Memory-map a segment and check every array's dtype, shape and order, and their agreement."""
        compressed = (folder / name / _CODEC).exists()
        arrays: dict[str, Any] = {}
        for array_name in _COMPRESSED if compressed else _ARRAYS:
            path = folder / name / f"{array_name}.npy"
            try:
                arrays[array_name] = np.load(path, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                raise
            except Exception as exc:  # EOFError, ValueError, OSError: all mean a damaged file
                raise CorruptIndexError(
                    f"cannot read {path}: {exc}. Restore the index from a backup or rebuild it."
                ) from exc
        if compressed:
            if codecs is None:
                raise CorruptIndexError(f"segment {folder / name} is compressed but no codec store was given")
            arrays.update(tokens=None, bits=None, codec=codecs((folder / name / _CODEC).read_text().strip()))
        seg = cls(name, **arrays, folder=folder / name)
        bad = seg.problems(dim, dense_dim)
        if bad:
            raise CorruptIndexError(
                f"segment {folder / name} is damaged ({'; '.join(bad)}; expected dim {dim}, "
                f"dense_dim {dense_dim}). Restore the index from a backup or rebuild it."
            )
        return seg

    def problems(self, dim: int, dense_dim: int) -> list[str]:
        n = len(self.keys)
        expected: dict[str, tuple[Any, tuple[int, ...]]]
        if self.codec is not None:
            assert self.codes is not None
            t = len(self.codes)
            expected = {
                "codes": (np.uint16, (t,)),
                "residuals": (np.uint8, (t, self.codec.nbytes)),
                "dense": _dense_layout(self.dense.dtype, n, dense_dim),
            }
            if self.codec.dim != dim:
                return [f"its codec is for {self.codec.dim} dimensions"]
        else:
            assert self.tokens is not None
            t = len(self.tokens)
            expected = {
                "tokens": (np.float16, (t, dim)),
                "bits": (np.uint8, (t, (dim + 7) // 8)),
                "dense": (np.float32, (n, dense_dim)),
            }
        expected.update(offsets=(np.int64, (n + 1,)), keys=(np.int64, (n,)))
        bad = []
        for array_name, (dtype, shape) in expected.items():
            array = getattr(self, array_name)
            if array.dtype != dtype or array.shape != shape or not array.flags.c_contiguous:
                bad.append(
                    f"{array_name}.npy is {array.dtype}{array.shape}"
                    f"{'' if array.flags.c_contiguous else ' Fortran-ordered'}, not {np.dtype(dtype)}{shape}"
                )
        if bad:
            return bad
        if n and (self.offsets[0] != 0 or self.offsets[-1] != t or (np.diff(self.offsets) <= 0).any()):
            bad.append("offsets.npy does not rise from 0 to the token count")
        if n > 1 and (np.diff(self.keys) <= 0).any():
            bad.append("keys.npy is not strictly ascending")
        if self.codec is not None and self.codes is not None and t and int(np.max(self.codes)) >= self.codec.k:
            bad.append(f"codes.npy names centroids past its codec's {self.codec.k}")
        return bad


class SegmentWriter:
    """Streams passages into a new segment folder; ``finish`` gives it keys and a final name.

    ``folder=None`` builds the segment in memory (in-memory indexes). ``claim`` is the
    store's hold on the staging folder (a lock that tells cleaners it is in use).
    """

    claim: tuple[int, Path] | None = None

    def __init__(self, folder: Path | None, dim: int, dense_dim: int) -> None:
        self.folder, self.dim, self.dense_dim = folder, dim, dense_dim
        self.lengths: list[int] = []
        self.resumed_digest: str | None = None  # what the checkpoint staged, when resumed
        self._hash = hashlib.sha256()
        self._n_tokens = 0
        self._parts: dict[str, list[np.ndarray]] = {a: [] for a in _STREAMED}
        self._files: dict[str, BinaryIO] = {}
        self.codec: ResidualCodec | None = None  # set by compress() or append_coded()
        self._compressed: dict[str, np.ndarray] = {}  # in memory: the compressed arrays
        self._coded: dict[str, Any] = {}  # append_coded's streams: open files, or lists in memory
        self._sealed = False
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                for array_name in _STREAMED:
                    self._files[array_name] = open(
                        folder / f"{array_name}.npy", "r+b" if (folder / f"{array_name}.npy").exists() else "w+b"
                    )
            except OSError as exc:
                self.abort()
                raise storage_error(exc, f"writing a segment in {folder}") from exc

    @property
    def n(self) -> int:
        return len(self.lengths)

    @classmethod
    def resume(cls, folder: Path, dim: int, dense_dim: int) -> SegmentWriter:
        """Pick up a writer whose last ``checkpoint`` reached the disk (a fresh one if none did)."""
        try:
            progress = json.loads((folder / _PROGRESS).read_text())
            lengths = [int(x) for x in progress["lengths"]]
            digest = str(progress["digest"])
        except (OSError, ValueError, KeyError, TypeError):
            shutil.rmtree(folder, ignore_errors=True)
            return cls(folder, dim, dense_dim)
        writer = cls(folder, dim, dense_dim)
        writer.lengths, writer._n_tokens, writer.resumed_digest = lengths, sum(lengths), digest
        rows = {
            "tokens": (writer._n_tokens, dim * 2),
            "bits": (writer._n_tokens, (dim + 7) // 8),
            "dense": (len(lengths), dense_dim * 4),
        }
        for array_name, f in writer._files.items():
            count, row_bytes = rows[array_name]
            f.truncate(_HEADER + count * row_bytes)  # drop a batch written after the checkpoint
            f.seek(0, os.SEEK_END)
            if f.tell() != _HEADER + count * row_bytes:  # shorter than the checkpoint said: start over
                writer.abort()
                return cls(folder, dim, dense_dim)
        return writer

    def append(self, tokens: Sequence[np.ndarray], dense: np.ndarray) -> None:
        """Add passages: ``tokens`` float32 or float16 ``[t_i, dim]`` each (checked), ``dense`` ``[n, dense_dim]``."""
        if not len(tokens):
            return
        stacked = np.concatenate(tokens, dtype=np.float16)  # one copy, whatever the input's float type
        arrays = {"tokens": stacked, "bits": binarize(stacked), "dense": np.ascontiguousarray(dense, np.float32)}
        if self.folder is None:
            for array_name, array in arrays.items():
                self._parts[array_name].append(array)
        else:
            try:
                for array_name, array in arrays.items():
                    f = self._files[array_name]
                    if f.tell() < _HEADER:
                        f.seek(0)
                        f.write(b"\0" * _HEADER)  # placeholder header
                    f.write(array.tobytes())
            except OSError as exc:
                self.abort()
                raise storage_error(exc, f"writing a segment in {self.folder}") from exc
        self.lengths.extend(len(t) for t in tokens)
        self._n_tokens += len(stacked)

    def append_coded(
        self, codec: ResidualCodec, lengths: Sequence[int], codes: np.ndarray, residuals: np.ndarray, dense: np.ndarray
    ) -> None:
        """Add passages already coded with ``codec`` (compaction): their codes are copied, never
        decoded and coded again, which is faster and cannot drift. A writer takes coded passages
        or float ones (``append``), not both."""
        if not self._coded:
            if self._n_tokens:
                raise ValueError("this writer already holds float vectors")
            self.codec = codec
            if self.folder is None:
                self._coded = {"codes": [], "residuals": [], "dense": []}
            else:
                try:
                    self._coded = {
                        "codes": open(self.folder / "codes.npy", "wb"),
                        "residuals": open(self.folder / "residuals.npy", "wb"),
                        "dense": open(self.folder / "dense-coded.npy", "wb"),
                    }
                    for f in self._coded.values():
                        f.write(b"\0" * _HEADER)  # placeholder header, written over by finish
                except OSError as exc:
                    self.abort()
                    raise storage_error(exc, f"writing a segment in {self.folder}") from exc
        elif self.codec is None or codec.name != self.codec.name:
            raise ValueError("a writer's coded passages must share one codec")
        arrays: dict[str, np.ndarray] = {
            "codes": np.ascontiguousarray(codes, np.uint16),
            "residuals": np.ascontiguousarray(residuals, np.uint8),
            "dense": _dense_rows(dense, self.dense_dim),
        }
        for array_name, array in arrays.items():
            if self.folder is None:
                self._coded[array_name].append(array)
                continue
            try:
                self._coded[array_name].write(array.tobytes())
            except OSError as exc:
                self.abort()
                raise storage_error(exc, f"writing a segment in {self.folder}") from exc
        self.lengths.extend(int(x) for x in lengths)
        self._n_tokens += len(codes)

    def seal(self) -> None:
        """Give append_coded's streams their final shapes (files: the header, and the postings
        built; memory: one array). ``finish`` seals if this was not called."""
        assert self.codec is not None
        if self._sealed:
            return
        self._sealed = True
        shapes: dict[str, tuple[np.dtype[Any], tuple[int, ...]]] = {
            "codes": (np.dtype(np.uint16), (self._n_tokens,)),
            "residuals": (np.dtype(np.uint8), (self._n_tokens, self.codec.nbytes)),
            "dense": _dense_layout(None, self.n, self.dense_dim),
        }
        if self.folder is None:
            self._compressed = {
                name: np.concatenate(parts) if parts else np.zeros(shapes[name][1], shapes[name][0])
                for name, parts in self._coded.items()
            }
            return
        try:
            for array_name, f in self._coded.items():
                f.seek(0)
                f.write(_npy_header(*shapes[array_name]))
                f.close()
            self._write_postings()
        except OSError as exc:
            self.abort()
            raise storage_error(exc, f"writing a segment in {self.folder}") from exc

    def _write_postings(self) -> None:
        """Build the segment's posting lists now, while writing, so no reader has to on its first search."""
        assert self.folder is not None and self.codec is not None
        codes = np.load(self.folder / "codes.npy", mmap_mode="r")
        offsets = np.zeros(self.n + 1, np.int64)
        np.cumsum(self.lengths, out=offsets[1:])
        Postings.of(self.folder, codes, offsets, self.codec.k, strict=True)

    def note(self, material: bytes) -> None:
        """Fold one appended passage's identity (ids, text, given vectors) into the digest."""
        self._hash.update(len(material).to_bytes(8, "little") + material)

    def digest(self) -> str:
        """A digest of the passages noted so far, stored by ``checkpoint``."""
        return self._hash.hexdigest()

    def checkpoint(self) -> None:
        """Make what was appended durable and record it, so ``resume`` can continue from here."""
        if self.folder is None:
            return
        try:
            for f in self._files.values():
                f.flush()
                os.fsync(f.fileno())
            tmp = self.folder / f".{_PROGRESS}.tmp"
            tmp.write_text(json.dumps({"lengths": self.lengths, "digest": self.digest()}))
            os.replace(tmp, self.folder / _PROGRESS)
        except OSError as exc:
            raise storage_error(exc, f"writing a segment in {self.folder}") from exc

    @property
    def n_tokens(self) -> int:
        return self._n_tokens

    def staged_tokens(self, rows: np.ndarray | None = None, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Staged float16 token vectors: ``rows`` (sorted), or ``start:stop``, as float32.

        Read with plain reads, not a memory map: pages a mapping touches count as the
        process's memory, and a large write's staged tokens are gigabytes.
        """
        if self.folder is None:
            tokens = np.concatenate(self._parts["tokens"]) if self._parts["tokens"] else self._empty("tokens")
            return np.asarray(tokens[rows] if rows is not None else tokens[start:stop], np.float32)
        f = self._files["tokens"]
        f.flush()
        row_bytes = self.dim * 2
        if rows is None:
            stop = self._n_tokens if stop is None else min(stop, self._n_tokens)
            data = os.pread(f.fileno(), max(0, stop - start) * row_bytes, _HEADER + start * row_bytes)
            return np.frombuffer(data, np.float16).reshape(-1, self.dim).astype(np.float32)
        out = np.empty((len(rows), self.dim), np.float32)
        for i, r in enumerate(rows):
            out[i] = np.frombuffer(os.pread(f.fileno(), row_bytes, _HEADER + int(r) * row_bytes), np.float16)
        return out

    def compress(self, codec: ResidualCodec) -> None:
        """Code the staged tokens with ``codec``; ``finish`` then writes a compressed segment.

        The float16 staging files stay until ``finish`` (a checkpointed write resumes from them).
        """
        dense = self.staged_dense()
        if self.folder is None:
            codes, residuals = codec.encode(self.staged_tokens())
            self._compressed = {"codes": codes, "residuals": residuals, "dense": dense_codes.encode(dense)}
            self.codec = codec
            return
        block = 1 << 14  # tokens at a time: memory stays bounded on any write
        try:
            with open(self.folder / "codes.npy", "wb") as fc, open(self.folder / "residuals.npy", "wb") as fr:
                fc.write(_npy_header(np.dtype(np.uint16), (self._n_tokens,)))
                fr.write(_npy_header(np.dtype(np.uint8), (self._n_tokens, codec.nbytes)))
                for start in range(0, self._n_tokens, block):
                    codes, residuals = codec.encode(self.staged_tokens(start=start, stop=start + block))
                    fc.write(codes.tobytes())
                    fr.write(residuals.tobytes())
            with open(self.folder / "dense-coded.npy", "wb") as fd:
                fd.write(_npy_header(*_dense_layout(None, self.n, self.dense_dim)))
                fd.write(dense_codes.encode(dense).tobytes())
            self.codec = codec
            self._write_postings()
        except OSError as exc:
            raise storage_error(exc, f"writing a segment in {self.folder}") from exc

    def staged_dense(self) -> np.ndarray:
        if self.folder is None:
            return np.concatenate(self._parts["dense"]) if self._parts["dense"] else self._empty("dense")
        f = self._files["dense"]
        f.flush()
        data = os.pread(f.fileno(), self.n * self.dense_dim * 4, _HEADER)
        return np.frombuffer(data, np.float32).reshape(self.n, self.dense_dim)

    def finish(self, keys: np.ndarray, target: Path | None, name: str | None = None) -> Segment:
        """Write the keys, offsets and final headers, fsync, and rename into ``target/name``.

        Returns the segment (in memory, or mapped from its final place).
        """
        name = name or f"seg-{uuid.uuid4().hex[:12]}"
        if self._coded:
            self.seal()
        keys = np.ascontiguousarray(keys, np.int64)
        offsets = np.zeros(self.n + 1, np.int64)
        np.cumsum(self.lengths, out=offsets[1:])
        if self.folder is None or target is None:
            if self.codec is not None:
                c = self._compressed
                return Segment(name, None, None, offsets, c["dense"], keys, c["codes"], c["residuals"], self.codec)
            parts = {a: np.concatenate(p) if p else self._empty(a) for a, p in self._parts.items()}
            return Segment(name, parts["tokens"], parts["bits"], offsets, parts["dense"], keys)
        shapes = {
            "tokens": (self._n_tokens, self.dim),
            "bits": (self._n_tokens, (self.dim + 7) // 8),
            "dense": (self.n, self.dense_dim),
        }
        dtypes: dict[str, np.dtype[Any]] = {
            "tokens": np.dtype(np.float16),
            "bits": np.dtype(np.uint8),
            "dense": np.dtype(np.float32),
        }
        try:
            for array_name, f in self._files.items():
                f.seek(0)
                f.write(_npy_header(dtypes[array_name], shapes[array_name]))
                f.flush()
                os.fsync(f.fileno())
                f.close()
            for array_name, array in (("offsets", offsets), ("keys", keys)):
                with open(self.folder / f"{array_name}.npy", "wb") as f:
                    np.save(f, array, allow_pickle=False)
                    f.flush()
                    os.fsync(f.fileno())
            (self.folder / _PROGRESS).unlink(missing_ok=True)
            if self.codec is not None:  # the compressed arrays replace the float16 staging ones
                for array_name in _STREAMED:
                    (self.folder / f"{array_name}.npy").unlink()
                os.rename(self.folder / "dense-coded.npy", self.folder / "dense.npy")
                (self.folder / "dense8.npy").unlink(missing_ok=True)  # staged by an earlier version
                for array_name in ("codes", "residuals", "dense"):
                    with open(self.folder / f"{array_name}.npy", "rb+") as f:
                        os.fsync(f.fileno())
                with open(self.folder / _CODEC, "w") as text:
                    text.write(self.codec.name)
                    text.flush()
                    os.fsync(text.fileno())
            fsync_dir(self.folder)
            os.rename(self.folder, target / name)
            fsync_dir(target)
        except OSError as exc:
            self.abort()
            raise storage_error(exc, f"writing segment {name}") from exc
        self.folder = None
        codec = self.codec
        return Segment.read(target, name, self.dim, self.dense_dim, None if codec is None else lambda _: codec)

    def _empty(self, array_name: str) -> np.ndarray:
        empty: dict[str, np.ndarray] = {
            "tokens": np.zeros((0, self.dim), np.float16),
            "bits": np.zeros((0, (self.dim + 7) // 8), np.uint8),
            "dense": np.zeros((0, self.dense_dim), np.float32),
        }
        return empty[array_name]

    def abort(self) -> None:
        """Drop everything written (a failed or abandoned write)."""
        for f in [*self._files.values(), *(f for f in self._coded.values() if not isinstance(f, list))]:
            try:
                f.close()
            except OSError:
                pass
        self._files, self._coded = {}, {}
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _dense_rows(dense: np.ndarray, dense_dim: int) -> np.ndarray:
    """Dense rows for a compressed segment: rows in the current layout copied as they are, others
    (float, or 8-bit rows of segments written before) coded."""
    if dense_codes.current(dense, dense_dim):
        return np.ascontiguousarray(dense)
    return dense_codes.encode(dense_codes.decode(dense))


def _dense_layout(stored: np.dtype | None, n: int, dense_dim: int) -> tuple[np.dtype, tuple[int, int]]:
    """What a compressed segment's dense array must be: the current layout, or (``stored``: the
    dtype found) one written before: float16 rows, or 8 bits."""
    if stored == np.float16:
        return np.dtype(np.float16), (n, dense_dim)
    if stored == np.int8:
        return np.dtype(np.int8), (n, dense_dim + 4)
    dtype, cols = dense_codes.layout(dense_dim)
    return dtype, (n, cols)
