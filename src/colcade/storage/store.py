"""Durable, shared storage: immutable vector segments plus SQLite for ids, text, metadata and state.

On disk an index is a folder::

    manifest.json     format version and the encoder's identity; written once, atomically
    docs.sqlite       docs(key, id, text, metadata, live), segments(seq, name),
                      meta(next_key, generation): the one commit point
    write.lock        the cross-process write lock (``locking.py``) and who holds it
    segments/<name>/  one immutable segment per write (``segments.py``), memory-mapped
    codecs/<name>/    the codecs compressed segments were written with (``engine/codec.py``)
    staging/<tag>/    segments being streamed, not yet committed (a resumable ingest's included)

Commit protocol. A writer takes the write lock, so every write applies to the latest committed
state, never to a handle's stale view. Its segment is streamed under ``staging/``, fsynced,
renamed into ``segments/``, and only then listed in SQLite in the same transaction as its
documents, the tombstones it makes, the next key and a new generation. A crash before that
commit leaves an unlisted folder that ``compact`` removes; after it, the write is whole.

Keys come from a persistent counter and are never reused, so a key names one passage forever;
compaction keeps their order, so the concatenation of all segments' keys is ascending and a
key's position is a binary search. Readers work on an immutable ``State``; each read checks the
committed generation (one indexed SQLite read) and loads what other processes committed, so a
search runs on one committed state from start to finish.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from colcade.engine import dense_codes
from colcade.engine import shortlist as dense_shortlist
from colcade.engine.codec import ResidualCodec, centroid_count, check_nbits, default_nbits
from colcade.engine.partition import Partition
from colcade.engine.shortlist import DenseShortlist
from colcade.errors import (
    CorruptIndexError,
    DuplicateIdError,
    IndexClosedError,
    IndexExistsError,
    IndexLockedError,
    IndexNotFoundError,
    InvalidInputError,
    StorageError,
    UnknownIdError,
)
from colcade.storage.locking import DEFAULT_TIMEOUT, WriteLock, fcntl, same_file
from colcade.storage.segments import Segment, SegmentWriter, fsync_dir

FORMAT = "colcade-index"
VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "docs.sqlite"
CODECS = "codecs"
PARTITIONS = "partitions"  # the dense shortlist's saved inverted files (engine/partition.py)
SEGMENTS = "segments"
STAGING = "staging"
_CHUNK = 500  # SQLite caps the number of parameters in one statement
CHECKPOINT_DAYS = 7  # an interrupted, checkpointed write is kept this long for a resume

_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (seq INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    key INTEGER PRIMARY KEY, id TEXT NOT NULL, text TEXT NOT NULL,
    metadata TEXT NOT NULL, live INTEGER NOT NULL DEFAULT 1);
CREATE UNIQUE INDEX IF NOT EXISTS docs_live_id ON docs(id) WHERE live = 1;
CREATE INDEX IF NOT EXISTS docs_dead ON docs(live) WHERE live = 0;
"""
# Added after format 1 shipped; an index without it gets it on open (keys start past the largest).
_META = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
# The lexical index (BM25 over the live passages' text): an FTS5 index over docs.text, kept in
# step by triggers, so it commits and rolls back with the rows themselves (every write path, every
# process, and a crash anywhere). Added after format 1 shipped; older indexes get it on open.
_LEXICAL = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5("
    "text, content='docs', content_rowid='key', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS lexical_add AFTER INSERT ON docs WHEN new.live = 1 BEGIN "
    "INSERT INTO lexical(rowid, text) VALUES (new.key, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS lexical_tombstone AFTER UPDATE OF live ON docs WHEN old.live = 1 AND new.live = 0 "
    "BEGIN INSERT INTO lexical(lexical, rowid, text) VALUES ('delete', old.key, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS lexical_drop AFTER DELETE ON docs WHEN old.live = 1 BEGIN "
    "INSERT INTO lexical(lexical, rowid, text) VALUES ('delete', old.key, old.text); END",
]


@dataclass(frozen=True)
class State:
    """One committed state of the index; writers replace it whole, never mutate it.

    Positions number the passages of all segments in order; ``live`` marks the ones not
    deleted; ``keys`` (ascending) maps positions to docs.key; ``shortlist`` holds (at least)
    these segments' dense vectors by position.
    """

    generation: int
    segments: tuple[Segment, ...]
    bases: np.ndarray  # bases[i] = first position of segment i
    keys: np.ndarray
    live: np.ndarray
    shortlist: DenseShortlist

    @classmethod
    def of(cls, generation: int, segments: Sequence[Segment], dead: np.ndarray, shortlist: DenseShortlist) -> State:
        bases = np.concatenate([[0], np.cumsum([s.n for s in segments])]).astype(np.int64)
        keys = np.concatenate([s.keys for s in segments]) if segments else np.zeros(0, np.int64)
        return cls(generation, tuple(segments), bases, keys, ~np.isin(keys, dead), shortlist)

    @property
    def n_live(self) -> int:
        return int(np.count_nonzero(self.live))

    def _held(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each key's position (where it would be) and whether this state holds it live."""
        keys = np.asarray(keys, np.int64)
        pos = np.searchsorted(self.keys, keys)
        ok = pos < len(self.keys)
        ok[ok] = self.keys[pos[ok]] == keys[ok]
        ok[ok] = self.live[pos[ok]]
        return pos, ok

    def aligned_positions(
        self, keys: np.ndarray, scores: np.ndarray, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions of those ``keys`` this state holds live (and ``allowed`` lets through), with
        their ``scores`` kept beside them."""
        pos, ok = self._held(keys)
        if allowed is not None:
            ok[ok] = np.isin(pos[ok], allowed)
        return pos[ok], np.asarray(scores)[ok]

    def positions_of(self, keys: np.ndarray) -> np.ndarray:
        """Positions of those ``keys`` this state holds live (newer or deleted ones are dropped)."""
        pos, ok = self._held(keys)
        return np.asarray(pos[ok])

    def holding(self) -> list[Segment]:
        """The segments that hold live passages."""
        return [s for s, a, b in zip(self.segments, self.bases, self.bases[1:]) if self.live[a:b].any()]

    def locate(self, positions: np.ndarray) -> Iterable[tuple[Segment, np.ndarray, np.ndarray]]:
        """Split positions by segment: (segment, local indices, indices into ``positions``)."""
        which = np.searchsorted(self.bases, positions, side="right") - 1
        order = np.argsort(which, kind="stable")
        bounds = np.flatnonzero(np.diff(which[order])) + 1
        for group in np.split(order, bounds):
            if len(group):
                s = int(which[group[0]])
                yield self.segments[s], positions[group] - self.bases[s], group


def _recode(state: State, positions: np.ndarray, writer: SegmentWriter, batch: int, dense_dim: int) -> None:
    """Append the passages at ``positions`` to ``writer`` as float vectors (decoded when compressed)."""
    for start in range(0, len(positions), batch):  # memory bounded by one batch
        chunk = positions[start : start + batch]
        tokens: list[np.ndarray] = [None] * len(chunk)  # type: ignore[list-item]
        dense = np.empty((len(chunk), dense_dim), np.float32)
        for seg, local, idx in state.locate(chunk):
            for i, j in zip(local, idx):
                tokens[j] = seg.passage_tokens(i)
            dense[idx] = dense_codes.decode(seg.dense[local])
        writer.append(tokens, dense)


def _copy_coded(state: State, positions: np.ndarray, writer: SegmentWriter, batch: int) -> None:
    """Append the passages at ``positions`` to ``writer`` with their codes as stored (one codec)."""
    for start in range(0, len(positions), batch):
        # Positions ascend, so segments come in order and each one's passages ascend within it.
        for seg, local, _ in state.locate(positions[start : start + batch]):
            assert seg.codec is not None and seg.codes is not None and seg.residuals is not None
            lo, hi = seg.offsets[local], seg.offsets[local + 1]
            rows = np.repeat(hi - np.cumsum(hi - lo), hi - lo) + np.arange(int((hi - lo).sum()))
            writer.append_coded(seg.codec, hi - lo, seg.codes[rows], seg.residuals[rows], seg.dense[local])


def to_json(metadata: dict[str, Any], id_: str) -> str:
    try:
        return json.dumps(metadata, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"metadata of {id_!r} cannot be stored as JSON ({exc}); use str, int, float, bool, None, lists and dicts"
        ) from exc


STORAGE_KINDS = ("compressed", "float16")
MIN_TRAIN = 1 << 14  # tokens: below this an index stays float16 (a codec fitted to fewer generalizes poorly)
TRAINED_ENOUGH = 1 << 18  # tokens: a codec fitted to this many is kept for every later write
CODEC_SAMPLE_BYTES = 1 << 29  # the most a codec's training sample holds in memory


def check_storage(storage: str, nbits: float, dim: int | None = None) -> None:
    if storage not in STORAGE_KINDS:
        raise InvalidInputError(f"storage must be one of {', '.join(map(repr, STORAGE_KINDS))}, but got {storage!r}")
    check_nbits(nbits, dim)


def write_manifest(path: Path, encoder_info: dict[str, Any], storage: dict[str, Any] | None = None) -> None:
    """Write manifest.json atomically: temp file, fsync, rename."""
    tmp = path / f".{MANIFEST}.tmp"
    manifest: dict[str, Any] = {"format": FORMAT, "version": VERSION, "encoder": encoder_info}
    if storage is not None:
        manifest["storage"] = storage
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / MANIFEST)
    fsync_dir(path)


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
        raise CorruptIndexError(
            f"{path} has index format {manifest.get('version')}; this colcade reads format {VERSION}"
        )
    encoder = manifest.get("encoder")
    if not isinstance(encoder, dict) or not {"name", "dim", "dense_dim", "fingerprint"} <= encoder.keys():
        raise CorruptIndexError(f"{path / MANIFEST} does not describe its encoder")
    return manifest


class _Moved(Exception):
    """A listed segment's file is missing: a compaction committed meanwhile (or the index is damaged)."""


class Store:
    """Segments and documents of one index; ``path=None`` keeps everything in memory.

    Two SQLite connections: one for writers (under the write lock), one for readers, so a
    long write never stalls searches. In memory there is one connection and one lock.
    """

    def __init__(
        self,
        path: Path | None,
        encoder_info: dict[str, Any],
        lock_timeout: float,
        ivf_above: int | None,
        storage: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.encoder_info = encoder_info
        # Indexes from before compression have no "storage" entry: they stay float16.
        self.storage: dict[str, Any] = storage or {"kind": "float16"}
        self._codecs: dict[str, ResidualCodec] = {}
        self._codec_guard = threading.Lock()
        self.dim = int(encoder_info["dim"])
        self.dense_dim = int(encoder_info["dense_dim"])
        self.ivf_above = dense_shortlist.IVF_ABOVE if ivf_above is None else ivf_above  # read at open: tests lower it
        self.write_lock = WriteLock(path, lock_timeout)
        self._busy_timeout = min(float(lock_timeout), 86_400.0)
        self._publish = threading.Lock()
        # Operations in flight, so close() waits for them instead of closing a connection in use.
        self._cv = threading.Condition()
        self._active = 0
        self._closed = False
        self._wdb = self._connect()
        # Readers get a connection per thread (a slow filter on one thread never stalls another);
        # in memory there is one database, one connection, and one lock around it.
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._wguard: Any = threading.RLock() if path is None else nullcontext()
        self.state = State.of(-1, [], np.zeros(0, np.int64), self._new_shortlist())

    def _new_shortlist(self) -> DenseShortlist:
        if self.path is None:
            return DenseShortlist(self.dense_dim, self.ivf_above)
        return DenseShortlist(self.dense_dim, self.ivf_above, self.path / PARTITIONS, self.path / SEGMENTS)

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(
        cls,
        path: Path | None,
        encoder_info: dict[str, Any],
        lock_timeout: float = DEFAULT_TIMEOUT,
        ivf_above: int | None = None,
        storage: str = "compressed",
        nbits: float | None = None,
    ) -> Store:
        """A new index: built in a temporary folder and renamed into place, so two processes
        creating the same path cannot both succeed (the loser gets IndexExistsError)."""
        nbits = default_nbits(encoder_info.get("dim")) if nbits is None else nbits
        check_storage(storage, nbits, encoder_info.get("dim"))
        nbits = int(nbits) if float(nbits).is_integer() else float(nbits)  # JSON, from numpy numbers too
        layout = {"kind": storage, "nbits": nbits} if storage == "compressed" else {"kind": storage}
        if path is None:
            store = cls(None, encoder_info, lock_timeout, ivf_above, layout)
            store._wdb.executescript(_SCHEMA + _META + ";" + ";".join(_LEXICAL) + ";")
            store._wdb.execute("INSERT OR IGNORE INTO meta VALUES ('next_key', 0), ('generation', 0)")
            store.refresh()
            return store
        exists = IndexExistsError(f"{path} already exists: open it with LateIndex.open, or choose an empty folder")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise exists
        tmp = path.parent / f".{path.name}.creating-{uuid.uuid4().hex[:8]}"
        try:
            (tmp / SEGMENTS).mkdir(parents=True)
            db = sqlite3.connect(tmp / DATABASE, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA + _META + ";" + ";".join(_LEXICAL) + ";")
                db.execute("INSERT INTO meta VALUES ('next_key', 0), ('generation', 0)")
            finally:
                db.close()
            write_manifest(tmp, encoder_info, layout)
            fsync_dir(tmp)
            try:
                os.rename(tmp, path)  # atomic; refuses a folder that another creator filled meanwhile
            except OSError:
                raise exists from None
            fsync_dir(path.parent)
        except IndexExistsError:
            raise
        except OSError as exc:  # IndexExistsError is one too: it goes out as it is, above
            raise StorageError(f"cannot create an index at {path}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls.open(path, lock_timeout, ivf_above)

    @classmethod
    def open(cls, path: Path, lock_timeout: float = DEFAULT_TIMEOUT, ivf_above: int | None = None) -> Store:
        manifest = read_manifest(path)
        db_file = path / DATABASE
        if not db_file.is_file():
            raise CorruptIndexError(f"{db_file} is missing: restore it from a backup or rebuild the index")
        if db_file.stat().st_size == 0:
            raise CorruptIndexError(
                f"{db_file} is empty (a failed copy or restore?): restore it from a backup or rebuild the index"
            )
        storage = manifest.get("storage")
        if storage is not None and (not isinstance(storage, dict) or storage.get("kind") not in STORAGE_KINDS):
            raise CorruptIndexError(f"{path / MANIFEST} names an unknown storage layout: {storage!r}")
        store = cls(path, manifest["encoder"], lock_timeout, ivf_above, storage)
        try:
            tables = {r[0] for r in store._reader().execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"docs", "segments"} <= tables:
                raise CorruptIndexError(
                    f"{db_file} lacks colcade's tables (found {sorted(tables)}): restore it or rebuild the index"
                )
            if "meta" not in tables:
                store._migrate()
            if "lexical" not in tables:
                store._add_lexical()
            store.refresh()
        except BaseException:
            store.close()
            raise
        return store

    def _connect(self) -> sqlite3.Connection:
        target = ":memory:" if self.path is None else self.path / DATABASE
        try:
            db = sqlite3.connect(target, timeout=self._busy_timeout, check_same_thread=False, isolation_level=None)
            if self.path is not None:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # set once, at create
                    db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # a committed add survives power loss
        except sqlite3.DatabaseError as exc:
            raise _db_error(exc, str(target), "opening") from exc
        return db

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (the one connection, in memory)."""
        if self.path is None:
            return self._wdb
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
            with self._cv:
                self._readers.append(db)
        return db

    @contextmanager
    def _use(self) -> Iterator[None]:
        """Count an operation on the connections: close() waits until none is in flight."""
        with self._cv:
            self._check_open()
            self._active += 1
        try:
            yield
        finally:
            with self._cv:
                self._active -= 1
                self._cv.notify_all()

    def _migrate(self) -> None:
        """Give a format-1 index without ``meta`` its key counter (past every key it ever held)."""
        with self.write_lock.hold("upgrade"), self._transaction() as db:
            db.execute(_META)
            db.execute("INSERT OR IGNORE INTO meta SELECT 'next_key', coalesce(max(key), -1) + 1 FROM docs")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', 0)")

    def _add_lexical(self) -> None:
        """Give an index made before the lexical index one, built from its live passages."""
        with self.write_lock.hold("upgrade"), self._transaction() as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'lexical'").fetchone() is None:
                for statement in _LEXICAL:  # one by one: executescript would commit mid-transaction
                    db.execute(statement)
                db.execute("INSERT INTO lexical(rowid, text) SELECT key, text FROM docs WHERE live = 1")

    def lexical(
        self, db: sqlite3.Connection, terms: Sequence[str], n: int, where: tuple[str, list[Any]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keys and BM25 scores (higher is better) of the ``n`` live passages best matching any of
        ``terms`` (among those a filter's ``where`` clause on docs lets through: before the limit)."""
        if not terms or n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        allowed, params = (
            ("", [])
            if where is None
            else (
                f" AND rowid IN (SELECT key FROM docs WHERE live = 1 AND {where[0]})",
                list(where[1]),
            )
        )
        rows = db.execute(
            f"SELECT rowid, -bm25(lexical) FROM lexical WHERE lexical MATCH ?{allowed} ORDER BY bm25(lexical) LIMIT ?",
            (match, *params, int(n)),
        ).fetchall()
        return np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.float32)

    # ------------------------------------------------------------------ state
    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosedError(
                f"this index handle ({self.path or 'in memory'}) was closed; open it again with LateIndex.open"
            )

    def _meta(self, db: sqlite3.Connection) -> tuple[int, int]:
        rows = dict(db.execute("SELECT name, value FROM meta"))
        return int(rows["generation"]), int(rows["next_key"])

    def _current(self, db: sqlite3.Connection) -> State:
        """The committed state as ``db`` sees it now, loading only when the generation moved."""
        generation, _ = self._meta(db)
        state = self.state
        if generation != state.generation:
            state = self._load(db, state)
            self._set_state(state)
        return state

    def _current_locked(self, db: sqlite3.Connection) -> State:
        """``_current`` for a writer: under the write lock no compaction runs, so a missing file is damage."""
        try:
            return self._current(db)
        except _Moved as moved:
            raise CorruptIndexError(
                f"{self._db_name()} lists a segment whose {moved.args[0]} is missing; "
                "restore the index from a backup or rebuild it"
            ) from None

    def _snapshot_locked(self) -> State:
        """The latest committed state through the writer's connection (never waits for readers)."""
        with self._use(), self._wguard:
            db = self._wdb
            db.execute("BEGIN")
            try:
                return self._current_locked(db)
            finally:
                db.execute("COMMIT")

    def _set_state(self, state: State) -> None:
        with self._publish:  # never replace a newer state with an older one
            if state.generation >= self.state.generation:
                self.state = state

    def _load(self, db: sqlite3.Connection, prev: State) -> State:
        """The committed state ``db`` sees (call inside a transaction), reusing ``prev``'s mapped segments."""
        try:
            generation, next_key = self._meta(db)
            names = [r[0] for r in db.execute("SELECT name FROM segments ORDER BY seq")]
            dead = np.array([r[0] for r in db.execute("SELECT key FROM docs WHERE live = 0")], dtype=np.int64)
            n_rows = db.execute("SELECT count(*) FROM docs").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise CorruptIndexError(
                f"cannot read {self._db_name()}: {exc}. Restore it from a backup or rebuild the index."
            ) from exc
        cached = {s.name: s for s in prev.segments}
        segments = []
        for name in names:
            if name in cached:
                segments.append(cached[name])
                continue
            assert self.path is not None  # an in-memory store lists no segment it does not hold
            try:
                segments.append(Segment.read(self.path / SEGMENTS, name, self.dim, self.dense_dim, self.codec))
            except FileNotFoundError as exc:
                raise _Moved(exc.filename) from None
        total = sum(s.n for s in segments)
        if n_rows != total:
            raise CorruptIndexError(
                f"{self._db_name()} lists {n_rows} documents but its segments hold {total}; "
                "restore the index from a backup or rebuild it"
            )
        for a, b in zip(segments, segments[1:]):
            if a.n and b.n and a.keys[-1] >= b.keys[0]:
                raise CorruptIndexError(
                    f"segments {a.name} and {b.name} of {self.path} overlap in keys; restore or rebuild the index"
                )
        if segments and total and max(int(s.keys[-1]) for s in segments if s.n) >= next_key:
            raise CorruptIndexError(
                f"{self._db_name()}: a segment holds a key past the key counter; restore or rebuild the index"
            )
        shortlist = prev.shortlist.covering(segments)
        return State.of(generation, segments, dead, shortlist)

    def _db_name(self) -> str:
        return str(self.path / DATABASE) if self.path else "the in-memory database"

    def refresh(self) -> State:
        """Load what other handles and processes committed; returns the current state."""
        with self.reading() as (state, _):
            return state

    @contextmanager
    def reading(self) -> Iterator[tuple[State, sqlite3.Connection]]:
        """The current committed state and a connection whose queries see exactly that state."""
        with self._use(), self._wguard:
            db = self._reader()
            try:
                for _ in range(20):
                    db.execute("BEGIN")
                    try:
                        state = self._current(db)
                    except _Moved as moved:  # compacted away after we read the list: read it again
                        db.execute("COMMIT")
                        missing = moved.args[0]
                        continue
                    except BaseException:
                        db.execute("COMMIT")
                        raise
                    break
                else:
                    raise CorruptIndexError(
                        f"{self._db_name()} lists a segment whose {missing} is missing; "
                        "restore the index from a backup or rebuild it"
                    )
                try:
                    yield state, db
                finally:
                    db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise _db_error(exc, self._db_name(), "reading") from exc

    # ------------------------------------------------------------------ reading
    @staticmethod
    def live_keys_for_ids(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = list(ids[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            found.update(db.execute(f"SELECT id, key FROM docs WHERE live = 1 AND id IN ({marks})", chunk).fetchall())
        return found

    @staticmethod
    def rows(db: sqlite3.Connection, keys: Sequence[int]) -> dict[int, tuple[str, str, dict[str, Any]]]:
        """id, text and metadata by key (a key's row never changes while it exists)."""
        keys = [int(k) for k in keys]
        out: dict[int, tuple[str, str, dict[str, Any]]] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, id_, text, meta in db.execute(
                f"SELECT key, id, text, metadata FROM docs WHERE key IN ({marks})", chunk
            ):
                out[key] = (id_, text, json.loads(meta))
        return out

    @staticmethod
    def keys_where(db: sqlite3.Connection, where: str, params: list[Any]) -> np.ndarray:
        rows = db.execute(f"SELECT key FROM docs WHERE live = 1 AND {where} ORDER BY key", params)
        return np.array([r[0] for r in rows], dtype=np.int64)

    def bytes_on_disk(self) -> int:
        if self.path is None:
            return 0
        total = 0
        for folder, _, files in os.walk(self.path):  # skips folders that vanish meanwhile
            for name in files:
                try:
                    total += os.stat(os.path.join(folder, name)).st_size
                except FileNotFoundError:  # removed by a commit or compaction in another process
                    pass
        return total

    # ------------------------------------------------------------------ codecs
    def codec(self, name: str) -> ResidualCodec:
        """The codec of that name (loaded once; codecs never change)."""
        with self._codec_guard:
            if name not in self._codecs:
                if self.path is None:
                    raise CorruptIndexError(f"codec {name} is not in this in-memory index")
                try:
                    self._codecs[name] = ResidualCodec.load(self.path / CODECS / name)
                except FileNotFoundError:
                    raise CorruptIndexError(
                        f"{self.path / CODECS / name} is missing, and segments need it: restore the index or rebuild it"
                    ) from None
            return self._codecs[name]

    def _codec_sizes(self) -> dict[str, int]:
        """Each saved codec's training size, without loading its centroids."""
        if self.path is None:
            return {name: c.trained_on for name, c in self._codecs.items()}
        sizes = {}
        folder = self.path / CODECS
        for entry in folder.iterdir() if folder.is_dir() else []:
            try:
                sizes[entry.name] = int(json.loads((entry / "codec.json").read_text())["trained_on"])
            except (OSError, ValueError, KeyError):
                continue  # one being written, or not a codec
        return sizes

    def codec_for(self, writer: SegmentWriter, floats: Sequence[Segment] = ()) -> ResidualCodec | None:
        """The codec to compress a write with; None keeps it float16.

        A codec is only as good as the tokens it was fitted to, so an index stays float16 until
        it holds ``MIN_TRAIN`` tokens (small indexes are small anyway). Then the existing codec
        fitted to the most tokens is used if it is enough for this write (fitted to
        ``TRAINED_ENOUGH`` tokens, or to at least a quarter of this write's); otherwise a new one
        is fitted to a sample of this write's tokens and of ``floats``, the index's float16
        segments. Segments name their codec, so several may coexist; compaction keeps one.
        """
        if self.storage["kind"] != "compressed" or not writer.n_tokens:
            return None
        sizes = self._codec_sizes()
        if sizes:
            best = max(sizes, key=lambda name: sizes[name])
            if sizes[best] >= TRAINED_ENOUGH or 4 * sizes[best] >= writer.n_tokens:
                if self.path is not None:  # in use: compaction removes unnamed codecs only a day after last use
                    os.utime(self.path / CODECS / best)
                return self.codec(best)
        floats = [s for s in floats if s.codec is None]
        total = writer.n_tokens + sum(s.n_tokens for s in floats)
        if total < MIN_TRAIN:
            return None
        rng = np.random.default_rng(0)
        # 16 tokens a centroid (k-means needs no more), within 512 MB of float32: at d=384 that
        # holds 16 for 16,384 centroids, so fewer are fitted past it.
        parts, want = [], min(16 * centroid_count(total), CODEC_SAMPLE_BYTES // (4 * self.dim))
        for n, read in [(writer.n_tokens, lambda rows: writer.staged_tokens(rows))] + [
            (s.n_tokens, lambda rows, s=s: np.asarray(s.tokens[rows], np.float32)) for s in floats
        ]:
            share = int(round(want * n / total))  # a sample in proportion
            parts.append(read(np.sort(rng.choice(n, size=min(n, max(1, share)), replace=False))))
        codec = ResidualCodec.train(np.concatenate(parts), total, self.storage["nbits"])
        if self.path is not None:
            (self.path / CODECS).mkdir(exist_ok=True)
            try:
                codec.save(self.path / CODECS / codec.name)
            except OSError as exc:
                raise StorageError(f"cannot save a codec in {self.path / CODECS}: {exc}") from exc
        with self._codec_guard:
            self._codecs[codec.name] = codec
        return codec

    def refit_due(self, state: State) -> bool:
        """Whether compaction would fit a better codec: float16 segments that could be coded, or
        codecs fitted to under a quarter of the index (and to fewer than ``TRAINED_ENOUGH`` tokens)."""
        if self.storage["kind"] != "compressed":
            return False
        holding = state.holding()
        total = sum(s.n_tokens for s in holding)
        if any(s.codec is None for s in holding) and total >= MIN_TRAIN:
            return True
        fitted = max((s.codec.trained_on for s in holding if s.codec is not None), default=0)
        return bool(fitted) and fitted < TRAINED_ENOUGH and 4 * fitted < total

    # ------------------------------------------------------------------ writing
    def writer(self, tag: str | None = None) -> SegmentWriter:
        """A segment writer under ``staging/`` (resumed when ``tag`` names an interrupted one)."""
        self._check_open()
        if self.path is None:
            return SegmentWriter(None, self.dim, self.dense_dim)
        staging = self.path / STAGING
        staging.mkdir(exist_ok=True)
        tag = tag or f"add-{uuid.uuid4().hex[:12]}"
        claim = None
        for _ in range(50):  # a compaction's cleaner may hold it for a moment
            claim = _claim(staging / f"{tag}.lock")  # first, so a cleaner never takes a live folder
            if claim is not None:
                break
            time.sleep(0.02)
        if claim is None:
            raise IndexLockedError(
                f"{staging / tag} is being written by another process (the same file indexed twice at once?)"
            )
        writer = SegmentWriter.resume(staging / tag, self.dim, self.dense_dim)
        writer.claim = claim
        return writer

    def release(self, writer: SegmentWriter) -> None:
        """Drop a writer's claim on its staging folder (after it committed or was aborted)."""
        if writer.claim is not None:
            fd, lock_path = writer.claim
            if not lock_path.with_suffix("").exists():  # committed or aborted: nothing to resume
                lock_path.unlink(missing_ok=True)
            os.close(fd)
            writer.claim = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._use(), self._wguard:
            db = self._wdb
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                raise _db_error(exc, self._db_name(), "writing") from exc

    def commit(
        self,
        writer: SegmentWriter,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        *,
        upsert: bool,
        remove_where: tuple[str, list[Any]] | None = None,
        operation: str = "add",
        keep_metadata: bool = False,
    ) -> None:
        """List the writer's passages, in one transaction with the tombstones they make.

        ``upsert`` replaces live passages with the same ids (else they are a DuplicateIdError);
        ``remove_where`` (a WHERE clause on docs) tombstones more passages in the same commit.
        """
        segment = None
        try:
            with self.write_lock.hold(operation), self._transaction() as db:
                state = self._current_locked(db)
                existing = self.live_keys_for_ids(db, ids)
                if existing and not upsert:
                    shown = ", ".join(repr(i) for i in list(existing)[:5])
                    raise DuplicateIdError(
                        f"{len(existing)} ids are already in the index ({shown}); use upsert() to replace them"
                    )
                remove = set(existing.values())
                if remove_where is not None:
                    remove.update(int(k) for k in self.keys_where(db, *remove_where))
                _, first = self._meta(db)
                keys = np.arange(first, first + writer.n, dtype=np.int64)
                if writer.n:
                    segment = writer.finish(keys, None if self.path is None else self.path / SEGMENTS)
                    db.execute("INSERT INTO segments(name) VALUES (?)", (segment.name,))
                kept: dict[str, str] = {}
                if keep_metadata and existing:  # the replaced passages' own metadata, as committed
                    kept = {
                        id_: json.dumps(meta, ensure_ascii=False)
                        for id_, _, meta in self.rows(db, list(existing.values())).values()
                    }
                db.executemany("UPDATE docs SET live = 0 WHERE key = ?", [(k,) for k in sorted(remove)])
                db.executemany(
                    "INSERT INTO docs(key, id, text, metadata) VALUES (?, ?, ?, ?)",
                    (
                        (k, i, t, kept[i] if i in kept else to_json(m, i))
                        for k, i, t, m in zip(keys.tolist(), ids, texts, metadatas)
                    ),
                )
                db.execute("UPDATE meta SET value = ? WHERE name = 'next_key'", (first + writer.n,))
                db.execute("UPDATE meta SET value = value + 1 WHERE name = 'generation'")
                generation = state.generation + 1
        except BaseException:
            writer.abort()
            if segment is not None and self.path is not None:
                shutil.rmtree(self.path / SEGMENTS / segment.name, ignore_errors=True)
            raise
        finally:
            if segment is None:
                writer.abort()  # nothing to list (a removal only): drop the empty staging folder
            self.release(writer)
        segments = [*state.segments, segment] if segment is not None else list(state.segments)
        dead = np.concatenate([state.keys[~state.live], np.fromiter(remove, np.int64, len(remove))])
        self._set_state(State.of(generation, segments, dead, state.shortlist.covering(segments)))

    def delete(self, ids: Sequence[str], missing_ok: bool = False) -> int:
        """Tombstone passages by id; unknown ids are an UnknownIdError and nothing is deleted
        (with ``missing_ok``, they are skipped)."""
        with self.write_lock.hold("delete"), self._transaction() as db:
            state = self._current_locked(db)
            found = self.live_keys_for_ids(db, ids)
            missing = [i for i in ids if i not in found]
            if missing and not missing_ok:
                shown = ", ".join(repr(i) for i in missing[:5])
                raise UnknownIdError(f"{len(missing)} ids are not in the index ({shown}); nothing was deleted")
            db.executemany("UPDATE docs SET live = 0 WHERE key = ?", [(k,) for k in found.values()])
            db.execute("UPDATE meta SET value = value + 1 WHERE name = 'generation'")
        live = state.live.copy()
        live[state.positions_of(np.fromiter(found.values(), np.int64, len(found)))] = False
        self._set_state(State(state.generation + 1, state.segments, state.bases, state.keys, live, state.shortlist))
        return len(found)

    def compact(self, batch: int = 4096) -> None:
        """Rewrite the live passages as one segment; drop tombstones, unlisted folders, stale staging."""
        with self.write_lock.hold("compact"):
            state = self._snapshot_locked()  # no other colcade writer can commit while we hold the lock
            live_pos = np.flatnonzero(state.live)
            writer = None
            holding = state.holding()  # a codec only deleted passages used is not a second one
            uncompressed = self.storage["kind"] == "compressed" and any(s.codec is None for s in holding)
            if len(state.segments) > 1 or state.n_live < len(state.live) or uncompressed:
                writer = self.writer()
            segment = None
            try:
                if writer is not None:
                    codecs = {s.codec.name for s in holding if s.codec is not None}
                    if len(codecs) == 1 and not uncompressed and not self.refit_due(state):
                        _copy_coded(state, live_pos, writer, batch)  # one codec already: copy its codes
                        writer.seal()
                    else:
                        _recode(state, live_pos, writer, batch, self.dense_dim)
                        codec = self.codec_for(writer)
                        if codec is not None:
                            writer.compress(codec)
                    with self._transaction() as db:
                        if self._meta(db)[0] != state.generation:
                            raise IndexLockedError(
                                f"{self.path} changed during compaction without taking the write lock; retry"
                            )
                        if writer.n:
                            segment = writer.finish(
                                state.keys[live_pos], None if self.path is None else self.path / SEGMENTS
                            )
                        db.execute("DELETE FROM docs WHERE live = 0")
                        db.execute("DELETE FROM segments")
                        if segment is not None:
                            db.execute("INSERT INTO segments(name) VALUES (?)", (segment.name,))
                        db.execute("UPDATE meta SET value = value + 1 WHERE name = 'generation'")
                    segments = [segment] if segment is not None else []
                    fresh = self._new_shortlist().covering(segments)
                    self._set_state(State.of(state.generation + 1, segments, np.zeros(0, np.int64), fresh))
            except BaseException:
                if writer is not None:
                    writer.abort()
                if segment is not None and self.path is not None:
                    shutil.rmtree(self.path / SEGMENTS / segment.name, ignore_errors=True)
                raise
            finally:
                if writer is not None:
                    self.release(writer)
            self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Segment folders no committed state lists, and staging nobody is writing (crash leftovers).

        Runs under the write lock: no other writer has a renamed-but-uncommitted segment. A
        process still mapping a removed file keeps its data (POSIX keeps the inode alive).
        Staging folders are removed only when no writer holds their lock; an interrupted
        checkpoint is kept for ``CHECKPOINT_DAYS``. Staging folders without a lock file are
        left alone (their writer creates the lock first, so they are not colcade's leftovers).
        """
        if self.path is None:
            return
        with self._use(), self._wguard:  # what is committed now, not what this handle last saw
            keep = {r[0] for r in self._wdb.execute("SELECT name FROM segments")}
        for folder in (self.path / SEGMENTS).iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)
        self._remove_unused_codecs(keep)
        self._remove_old_partitions()
        staging = self.path / STAGING
        if not staging.is_dir():
            return
        for entry in staging.iterdir():
            if entry.suffix != ".lock":
                continue
            folder = entry.with_suffix("")
            progress = folder / "progress.json"
            if progress.exists() and time.time() - progress.stat().st_mtime < CHECKPOINT_DAYS * 86_400:
                continue  # an interrupted checkpointed write, kept so that it can resume
            claim = _claim(entry)
            if claim is not None:  # nobody holds it: its writer died or gave up
                shutil.rmtree(folder, ignore_errors=True)
                entry.unlink(missing_ok=True)
                os.close(claim[0])

    def _remove_unused_codecs(self, segments: set[str]) -> None:
        """Codecs no committed segment names, once a day after they were saved or last chosen by a
        write (a write in flight may be about to commit one), and half-written codec folders."""
        assert self.path is not None
        folder = self.path / CODECS
        if not folder.is_dir():
            return
        used = set()
        for name in segments:
            try:
                used.add((self.path / SEGMENTS / name / "codec.txt").read_text().strip())
            except OSError:
                continue  # a float16 segment
        for entry in folder.iterdir():
            if entry.name not in used and time.time() - entry.stat().st_mtime > 86_400:
                shutil.rmtree(entry, ignore_errors=True)

    def _remove_old_partitions(self) -> None:
        """Saved partitions other than the one readers now choose (the largest), and half-written
        files, a day after they were written (a reader may be loading one)."""
        assert self.path is not None
        folder = self.path / PARTITIONS
        saved = Partition.saved(folder)
        newest = max(saved, key=lambda name: saved[name], default=None)
        try:
            entries = list(folder.iterdir())
        except OSError:  # none yet, or not ours to list
            return
        for entry in entries:
            try:
                if entry.stem != newest and entry.is_file() and time.time() - entry.stat().st_mtime > 86_400:
                    entry.unlink()
            except OSError:  # gone meanwhile, or not ours to remove: derived data, left alone
                continue

    def close(self) -> None:
        """Close the connections once operations in flight have ended; later calls raise IndexClosedError."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.wait_for(lambda: self._active == 0)
            for db in {id(d): d for d in [*self._readers, self._wdb]}.values():
                db.close()


def _claim(lock_path: Path) -> tuple[int, Path] | None:
    """An exclusive, non-blocking flock on ``lock_path``; None when another process holds it.

    A lock file may be unlinked by a cleaner between our open and our flock; a lock on an
    unlinked file protects nothing, so the file locked must still be the one at the path.
    """
    for _ in range(100):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
        if same_file(fd, lock_path):
            return fd, lock_path
        os.close(fd)
    return None


def _db_error(exc: sqlite3.DatabaseError, name: str, doing: str) -> Exception:
    """SQLite's errors in colcade's words."""
    message = str(exc)
    if "readonly" in message or "unable to open" in message or "permission" in message.lower():
        return StorageError(
            f"{doing} {name} failed ({message}): colcade needs write access to the index folder, "
            "even to search (SQLite's WAL files, write.lock); fix the permissions or copy it somewhere writable"
        )
    if "locked" in message or "busy" in message:
        return IndexLockedError(
            f"{name} stayed locked by another writer while {doing}; retry, or pass a longer lock_timeout"
        )
    if isinstance(exc, sqlite3.OperationalError) and ("full" in message or "disk" in message or "readonly" in message):
        return StorageError(
            f"{doing} {name} failed ({message}); nothing was committed and the index is as it was. "
            "Free some space (or fix the permissions) and retry."
        )
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in message:
        return IndexClosedError("this index handle was closed; open it again with LateIndex.open")
    return CorruptIndexError(f"{doing} {name} failed: {message}. Restore it from a backup or rebuild the index.")
