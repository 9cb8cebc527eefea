"""Durable storage: immutable vector segments, plus SQLite for ids, text, metadata and state.

On disk an index is a folder::

    manifest.json              format version and the encoder's identity; written once, atomically
    docs.sqlite                docs(key, id, text, metadata, live), segments(seq, name), the commit point
    segments/<name>/           one immutable segment per add: memory-mapped .npy files
        tokens.npy  float16 [T, d]          token vectors (rerank)
        bits.npy    uint8   [T, ceil(d/8)]  packed sign bits (prefilter)
        offsets.npy int64   [n + 1]         passage i owns rows offsets[i]:offsets[i+1]
        dense.npy   float32 [n, dense_dim]  one vector per passage (shortlist)
        keys.npy    int64   [n]             the docs.key of each passage, ascending

A segment is written and fsynced under a temporary name, renamed, and only then listed in
SQLite in the same transaction as its documents (and the tombstones of an upsert). A crash
before that commit leaves an unlisted folder that ``compact`` removes; after it, the add is
whole. Keys only grow and compaction keeps their order, so the concatenation of all
segments' keys is sorted and a key's position is a binary search.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from colcade.errors import CorruptIndexError, IndexExistsError, IndexNotFoundError, InvalidInputError
from colcade.kernels import binarize

FORMAT = "colcade-index"
VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "docs.sqlite"
SEGMENTS = "segments"
_ARRAYS = ("tokens", "bits", "offsets", "dense", "keys")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (seq INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    key INTEGER PRIMARY KEY, id TEXT NOT NULL, text TEXT NOT NULL,
    metadata TEXT NOT NULL, live INTEGER NOT NULL DEFAULT 1);
CREATE UNIQUE INDEX IF NOT EXISTS docs_live_id ON docs(id) WHERE live = 1;
CREATE INDEX IF NOT EXISTS docs_dead ON docs(live) WHERE live = 0;
"""


@dataclass(frozen=True)
class Segment:
    """The vectors of one batch of passages (arrays memory-mapped when on disk)."""

    name: str
    tokens: np.ndarray
    bits: np.ndarray
    offsets: np.ndarray
    dense: np.ndarray
    keys: np.ndarray

    @property
    def n(self) -> int:
        return len(self.keys)

    @classmethod
    def build(cls, name: str, tokens: Sequence[np.ndarray], dense: np.ndarray, keys: np.ndarray) -> "Segment":
        stacked = np.concatenate(tokens).astype(np.float16)
        lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return cls(name, stacked, binarize(stacked), offsets, np.ascontiguousarray(dense, np.float32), keys)

    def write(self, folder: Path) -> None:
        """Write durably under a temporary name, then rename into place."""
        tmp = folder / f".tmp-{self.name}"
        tmp.mkdir(parents=True)
        for array_name in _ARRAYS:
            with open(tmp / f"{array_name}.npy", "wb") as f:
                np.save(f, getattr(self, array_name), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        os.rename(tmp, folder / self.name)
        _fsync_dir(folder)

    @classmethod
    def read(cls, folder: Path, name: str, dim: int, dense_dim: int) -> "Segment":
        """Memory-map a segment and check that its arrays agree with each other."""
        arrays = {}
        for array_name in _ARRAYS:
            path = folder / name / f"{array_name}.npy"
            try:
                arrays[array_name] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise CorruptIndexError(f"cannot read {path}: {exc}. Restore the index from a backup or rebuild it.") from exc
        seg = cls(name, **arrays)
        t, n = len(seg.tokens), len(seg.keys)
        problems = [
            (seg.tokens.dtype != np.float16 or seg.tokens.shape != (t, dim), f"tokens {seg.tokens.dtype}{seg.tokens.shape}"),
            (seg.bits.shape != (t, (dim + 7) // 8), f"bits {seg.bits.shape}"),
            (seg.dense.shape != (n, dense_dim), f"dense {seg.dense.shape}"),
            (seg.offsets.shape != (n + 1,), f"offsets {seg.offsets.shape}"),
        ]
        bad = [what for failed, what in problems if failed]
        if not bad and (seg.offsets[0] != 0 or seg.offsets[-1] != t or (np.diff(seg.offsets) <= 0).any()):
            bad.append("offsets not increasing from 0 to the token count")
        if bad:
            raise CorruptIndexError(f"segment {folder / name} is inconsistent ({'; '.join(bad)}; dim {dim}, dense_dim {dense_dim}).")
        return seg


@dataclass(frozen=True)
class State:
    """A consistent view of the index for readers; writers replace it whole, never mutate it.

    Positions number the passages of all segments in order; ``live`` marks the ones not
    deleted; ``keys`` (ascending) maps positions to docs.key.
    """

    segments: tuple[Segment, ...]
    bases: np.ndarray  # bases[i] = first position of segment i
    keys: np.ndarray
    live: np.ndarray

    @classmethod
    def of(cls, segments: Sequence[Segment], dead: np.ndarray) -> "State":
        bases = np.concatenate([[0], np.cumsum([s.n for s in segments])]).astype(np.int64)
        keys = np.concatenate([s.keys for s in segments]) if segments else np.zeros(0, np.int64)
        return cls(tuple(segments), bases, keys, ~np.isin(keys, dead))

    @property
    def n_live(self) -> int:
        return int(np.count_nonzero(self.live))

    def positions_of(self, keys: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.keys, keys)

    def locate(self, positions: np.ndarray) -> Iterable[tuple[Segment, np.ndarray, np.ndarray]]:
        """Split positions by segment: (segment, local indices, indices into ``positions``)."""
        which = np.searchsorted(self.bases, positions, side="right") - 1
        order = np.argsort(which, kind="stable")
        bounds = np.flatnonzero(np.diff(which[order])) + 1
        for group in np.split(order, bounds):
            if len(group):
                s = int(which[group[0]])
                yield self.segments[s], positions[group] - self.bases[s], group


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_json(metadata: dict[str, Any], id_: str) -> str:
    try:
        return json.dumps(metadata, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"metadata of {id_!r} cannot be stored as JSON ({exc}); use str, int, float, bool, None, lists and dicts"
        ) from exc


def write_manifest(path: Path, encoder_info: dict[str, Any]) -> None:
    """Write manifest.json atomically: temp file, fsync, rename."""
    tmp = path / f".{MANIFEST}.tmp"
    with open(tmp, "w") as f:
        json.dump({"format": FORMAT, "version": VERSION, "encoder": encoder_info}, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / MANIFEST)
    _fsync_dir(path)


def read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise IndexNotFoundError(f"no index at {path}: create one with LateIndex.create({str(path)!r})")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise IndexNotFoundError(f"{path} is not a colcade index ({MANIFEST} is missing)") from None
    except (OSError, ValueError) as exc:
        raise CorruptIndexError(f"cannot read {path / MANIFEST}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptIndexError(f"{path / MANIFEST} is not a colcade manifest")
    if manifest.get("version") != VERSION:
        raise CorruptIndexError(f"{path} has index format {manifest.get('version')}; this colcade reads format {VERSION}")
    encoder = manifest.get("encoder")
    if not isinstance(encoder, dict) or not {"name", "dim", "dense_dim", "fingerprint"} <= encoder.keys():
        raise CorruptIndexError(f"{path / MANIFEST} does not describe its encoder")
    return manifest


class Store:
    """Segments and documents of one index; ``path=None`` keeps everything in memory.

    Writers hold ``lock`` and publish a new ``state``; readers take ``state`` once and use
    that snapshot, so a search never waits for the cascade of another.
    """

    def __init__(self, path: Path | None, encoder_info: dict[str, Any], db: sqlite3.Connection) -> None:
        self.path = path
        self.encoder_info = encoder_info
        self.dim = int(encoder_info["dim"])
        self.dense_dim = int(encoder_info["dense_dim"])
        self.db = db
        self.lock = threading.RLock()
        self.state = State.of([], np.zeros(0, np.int64))

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: Path | None, encoder_info: dict[str, Any]) -> "Store":
        if path is None:
            return cls._connect(None, encoder_info)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise IndexExistsError(f"{path} already exists: open it with LateIndex.open, or choose an empty folder")
        (path / SEGMENTS).mkdir(parents=True, exist_ok=True)
        store = cls._connect(path, encoder_info)
        write_manifest(path, encoder_info)  # last: a folder without it is not an index yet
        return store

    @classmethod
    def open(cls, path: Path) -> "Store":
        manifest = read_manifest(path)
        if not (path / DATABASE).is_file():
            raise CorruptIndexError(f"{path / DATABASE} is missing")
        store = cls._connect(path, manifest["encoder"])
        store.reload()
        return store

    @classmethod
    def _connect(cls, path: Path | None, encoder_info: dict[str, Any]) -> "Store":
        try:
            db = sqlite3.connect(":memory:" if path is None else path / DATABASE, check_same_thread=False, isolation_level=None)
            if path is not None:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # a committed add survives power loss
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise CorruptIndexError(f"cannot open {path / DATABASE if path else 'the database'}: {exc}") from exc
        return cls(path, encoder_info, db)

    def reload(self) -> None:
        """Read the committed state: segment list, their vectors, and the tombstones."""
        with self.lock:
            try:
                names = [r[0] for r in self.db.execute("SELECT name FROM segments ORDER BY seq")]
                dead = np.array([r[0] for r in self.db.execute("SELECT key FROM docs WHERE live = 0")], dtype=np.int64)
                n_rows = self.db.execute("SELECT count(*) FROM docs").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise CorruptIndexError(f"cannot read {self.path / DATABASE}: {exc}") from exc
            state = State.of([Segment.read(self.path / SEGMENTS, n, self.dim, self.dense_dim) for n in names], dead)
            if n_rows != len(state.keys):
                raise CorruptIndexError(f"{self.path} lists {n_rows} documents but its segments hold {len(state.keys)}")
            self.state = state

    # ------------------------------------------------------------------ reading
    def live_keys_for_ids(self, ids: Iterable[str]) -> dict[str, int]:
        ids = list(ids)
        found: dict[str, int] = {}
        for start in range(0, len(ids), 500):  # SQLite caps the number of parameters
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(f"SELECT id, key FROM docs WHERE live = 1 AND id IN ({marks})", chunk).fetchall())
        return found

    def rows(self, keys: Sequence[int]) -> dict[int, tuple[str, str, dict[str, Any]]]:
        """id, text and metadata by key."""
        keys = [int(k) for k in keys]
        out: dict[int, tuple[str, str, dict[str, Any]]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, id_, text, meta in self.db.execute(f"SELECT key, id, text, metadata FROM docs WHERE key IN ({marks})", chunk):
                out[key] = (id_, text, json.loads(meta))
        return out

    def distinct(self, keys: list[str], where: str, params: list[Any]) -> set[tuple[Any, ...]]:
        columns = ", ".join("json_extract(metadata, ?)" for _ in keys)
        paths = [f'$."{k}"' for k in keys]
        return set(self.db.execute(f"SELECT DISTINCT {columns} FROM docs WHERE live = 1 AND {where}", paths + params))

    def ids_where(self, where: str, params: list[Any]) -> list[str]:
        return [r[0] for r in self.db.execute(f"SELECT id FROM docs WHERE live = 1 AND {where} ORDER BY key", params)]

    def keys_where(self, where: str, params: list[Any]) -> np.ndarray:
        rows = self.db.execute(f"SELECT key FROM docs WHERE live = 1 AND {where} ORDER BY key", params)
        return np.array([r[0] for r in rows], dtype=np.int64)

    def dense_matrix(self) -> np.ndarray:
        """All passages' dense vectors, by position (a copy)."""
        if not self.state.segments:
            return np.zeros((0, self.dense_dim), np.float32)
        return np.concatenate([np.asarray(s.dense) for s in self.state.segments])

    def bytes_on_disk(self) -> int:
        if self.path is None:
            return 0
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    # ------------------------------------------------------------------ writing
    def append(
        self,
        tokens: Sequence[np.ndarray],
        dense: np.ndarray,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        replace: Sequence[int] = (),
    ) -> Segment:
        """Add passages as one new segment, tombstoning ``replace`` keys in the same commit."""
        with self.lock:
            first = int(self.db.execute("SELECT coalesce(max(key), -1) + 1 FROM docs").fetchone()[0])
            keys = np.arange(first, first + len(ids), dtype=np.int64)
            rows = [(int(k), i, t, _to_json(m, i)) for k, i, t, m in zip(keys, ids, texts, metadatas)]
            segment = Segment.build(f"seg-{uuid.uuid4().hex[:12]}", tokens, dense, keys)
            if self.path is not None:
                segment.write(self.path / SEGMENTS)
            try:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany("UPDATE docs SET live = 0 WHERE key = ?", [(int(k),) for k in replace])
                self.db.execute("INSERT INTO segments(name) VALUES (?)", (segment.name,))
                self.db.executemany("INSERT INTO docs(key, id, text, metadata) VALUES (?, ?, ?, ?)", rows)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                if self.path is not None:
                    shutil.rmtree(self.path / SEGMENTS / segment.name, ignore_errors=True)
                raise
            if self.path is not None:  # serve from the memory map, like a reopened index
                segment = Segment.read(self.path / SEGMENTS, segment.name, self.dim, self.dense_dim)
            old = self.state
            dead = np.concatenate([old.keys[~old.live], np.asarray(replace, np.int64)])
            self.state = State.of([*old.segments, segment], dead)
            return segment

    def tombstone(self, keys: Sequence[int]) -> None:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany("UPDATE docs SET live = 0 WHERE key = ?", [(int(k),) for k in keys])
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            old = self.state
            live = old.live.copy()
            live[old.positions_of(np.asarray(keys, np.int64))] = False
            self.state = State(old.segments, old.bases, old.keys, live)

    def compact(self) -> None:
        """Rewrite the live passages as one segment; drop tombstones and unlisted folders."""
        with self.lock:
            old = self.state
            live_pos = np.flatnonzero(old.live)
            if live_pos.size:
                tokens: list[np.ndarray] = [np.empty((0, self.dim), np.float16)] * len(live_pos)
                dense = np.empty((len(live_pos), self.dense_dim), np.float32)
                for seg, local, idx in old.locate(live_pos):
                    for i, j in zip(local, idx):
                        tokens[j] = seg.tokens[seg.offsets[i] : seg.offsets[i + 1]]
                    dense[idx] = seg.dense[local]
                segment = Segment.build(f"seg-{uuid.uuid4().hex[:12]}", tokens, dense, old.keys[live_pos])
                if self.path is not None:
                    segment.write(self.path / SEGMENTS)
                new = [segment]
            else:
                new = []
            try:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("DELETE FROM docs WHERE live = 0")
                self.db.execute("DELETE FROM segments")
                self.db.executemany("INSERT INTO segments(name) VALUES (?)", [(s.name,) for s in new])
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            if self.path is not None:
                new = [Segment.read(self.path / SEGMENTS, s.name, self.dim, self.dense_dim) for s in new]
                self.state = State.of(new, np.zeros(0, np.int64))
                keep = {s.name for s in new}
                for folder in (self.path / SEGMENTS).iterdir():  # old segments and crash leftovers
                    if folder.name not in keep:
                        shutil.rmtree(folder, ignore_errors=True)
            else:
                self.state = State.of(new, np.zeros(0, np.int64))

    def close(self) -> None:
        self.db.close()
