"""QdrantIndex: colcade's index contract (add / upsert / delete / get / search) on a Qdrant collection.

Qdrant shards and replicates; colcade brings the encoder, the checks on input, the ids, the
filters and the cascade as one query (``requests.py``). A passage is one point: the UUID5 of its
id, the named vectors ``dense`` and ``tokens``, and the payload ``colcade_id``, ``text``,
``metadata`` and ``colcade_order`` (when it was written, for ``ids()`` in insertion order).
The encoder's description sits in the collection's metadata, so a collection cannot be searched
with another model's vectors.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from colcade.encoders import EncodedQuery, Encoder, default_encoder, describe, from_manifest, pool
from colcade.encoders.base import check_dense, check_tokens
from colcade.errors import (
    BackendUnavailableError,
    ColcadeError,
    DuplicateIdError,
    EncoderMismatchError,
    IndexExistsError,
    IndexNotFoundError,
    InvalidInputError,
    UnknownIdError,
)
from colcade.inputs import (
    check_ids,
    check_images,
    check_metadatas,
    check_texts,
    check_unicode,
    count_passages,
    id_list,
    storable,
)
from colcade.optional import require
from colcade.qdrant import requests
from colcade.qdrant.filters import field_path, to_qdrant
from colcade.results import Hit, Hits, IndexStats, StageStats

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from colcade.index import LateIndex

_PAGE = 256  # points a request reads
# A Qdrant server refuses requests over 32 MiB (service.max_request_size_mb); a passage of 256
# tokens at 384 dimensions is ~2 MB of JSON, so writes and batched searches are cut to stay under.
REQUEST_BYTES = 16 << 20
# colcade sends a server's search parameters in local mode too (one code path); local mode says
# on every search that it ignores them.
warnings.filterwarnings("ignore", message="Local mode performs exact", category=UserWarning)


class QdrantIndex:
    """A late-interaction index kept in a Qdrant collection, searched with the same cascade.

    ``location``: a ``QdrantClient`` (a server, a cluster, Qdrant Cloud: any client you made), a
    URL (``"http://localhost:6333"``), ``":memory:"``, or a folder for Qdrant's local mode (one
    process at a time; for tests and notebooks).

    >>> import numpy as np
    >>> from colcade import PrecomputedEncoder
    >>> from colcade.qdrant import QdrantIndex
    >>> index = QdrantIndex.create(":memory:", "pages", PrecomputedEncoder(dim=4))
    >>> index.add(["red", "blue"], ids=["r", "b"], tokens=[np.eye(4)[:1], np.eye(4)[1:3]])
    ['r', 'b']
    >>> hits = index.search(index.encoder.query(np.eye(4)[1:2]), k=1)
    >>> hits[0].id, hits[0].score
    ('b', 1.0)
    """

    def __init__(self, client: QdrantClient, collection: str, encoder: Encoder, *, owns_client: bool) -> None:
        """Use ``QdrantIndex.create``, ``open`` or ``open_or_create``."""
        self._client = client
        self._collection = collection
        self._encoder = encoder
        self._info = describe(encoder)
        self._owns_client = owns_client
        self._where = _describe_client(client)

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        location: Any,
        collection: str,
        encoder: Encoder | None = None,
        *,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        on_disk: bool = True,
        indexed_fields: dict[str, str] | None = None,
    ) -> QdrantIndex:
        """A new, empty collection ``collection`` for ``encoder`` (the embedded default without one).

        On a cluster, ``shard_number`` and ``replication_factor`` go to Qdrant as they are.
        ``on_disk``: keep the float16 token vectors on disk (the binary codes of the prefilter are
        always in RAM). ``indexed_fields``: payload indexes to create on metadata keys, e.g.
        ``{"source": "keyword", "year": "integer"}`` (a server filters faster with them, and one in
        strict mode requires them).
        """
        from qdrant_client import models

        encoder = encoder if encoder is not None else default_encoder()
        kinds = {t.value for t in models.PayloadSchemaType}
        _check_name(collection)
        fields: dict[str, models.PayloadSchemaType] = {}
        for key, schema in (indexed_fields or {}).items():
            if schema not in kinds:
                raise InvalidInputError(f"indexed_fields[{key!r}] must be one of {sorted(kinds)}, but got {schema!r}")
            fields[field_path(key)] = models.PayloadSchemaType(schema)
        client, owns = _client(location)
        info = describe(encoder)
        with _calls(_describe_client(client)):
            if client.collection_exists(collection):
                _close(client, owns)
                raise IndexExistsError(
                    f"Qdrant collection {collection!r} already exists at {_describe_client(client)}: "
                    "open it with QdrantIndex.open, or choose another name"
                )
            try:
                client.create_collection(
                    collection, **requests.collection(info, on_disk, shard_number, replication_factor)
                )
            except ValueError as exc:  # local mode checks names itself
                _close(client, owns)
                raise InvalidInputError(f"Qdrant refused the collection name {collection!r}: {exc}") from None
            if not _is_local(client):  # local mode has no payload indexes (and warns that it has none)
                for path, schema in {**fields, "colcade_id": models.PayloadSchemaType.KEYWORD}.items():
                    client.create_payload_index(collection, path, field_schema=schema)
        return cls(client, collection, encoder, owns_client=owns)

    @classmethod
    def open(cls, location: Any, collection: str, encoder: Encoder | None = None) -> QdrantIndex:
        """Open a collection colcade created; ``encoder`` must be the one it was built with (without
        it, the encoder is rebuilt from the collection's metadata where colcade knows how)."""
        _check_name(collection)
        client, owns = _client(location, must_exist=True)
        where = _describe_client(client)
        try:
            with _calls(where):
                if not client.collection_exists(collection):
                    raise IndexNotFoundError(
                        f"no Qdrant collection {collection!r} at {where}: create it with QdrantIndex.create"
                    )
                config = client.get_collection(collection).config
            stored = (config.metadata or {}).get(requests.METADATA_KEY)
            if not isinstance(stored, dict) or "fingerprint" not in stored:
                raise IndexNotFoundError(
                    f"Qdrant collection {collection!r} at {where} was not made by colcade (its metadata has no "
                    f"{requests.METADATA_KEY!r} entry): export an index into a new collection with QdrantIndex.create"
                )
            _check_vectors(config, stored, collection)
            if encoder is None:
                encoder = from_manifest(stored)
            elif describe(encoder)["fingerprint"] != stored["fingerprint"]:
                raise EncoderMismatchError(
                    f"Qdrant collection {collection!r} was built with encoder {stored['name']!r} (dim {stored['dim']}, "
                    f"fingerprint {stored['fingerprint']}), not {encoder.name!r} (dim {encoder.dim}, fingerprint "
                    f"{describe(encoder)['fingerprint']}): open it with the same encoder"
                )
        except BaseException:
            _close(client, owns)
            raise
        return cls(client, collection, encoder, owns_client=owns)

    @classmethod
    def open_or_create(
        cls, location: Any, collection: str, encoder: Encoder | None = None, **create: Any
    ) -> QdrantIndex:
        """Open ``collection``, or create it (with ``create``'s keyword arguments) if there is none."""
        client, owns = _client(location)
        try:
            with _calls(_describe_client(client)):
                exists = client.collection_exists(collection)
        except BaseException:
            _close(client, owns)
            raise
        try:
            if exists:
                index = cls.open(client, collection, encoder)
            else:
                try:
                    index = cls.create(client, collection, encoder, **create)
                except IndexExistsError:  # another process created it first
                    index = cls.open(client, collection, encoder)
        except BaseException:
            _close(client, owns)
            raise
        index._owns_client = owns
        return index

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        *,
        encoder: Encoder | None = None,
        location: Any = ":memory:",
        collection: str = "colcade",
    ) -> QdrantIndex:
        """A new collection holding ``texts`` (in memory unless ``location`` says where)."""
        index = cls.create(location, collection, encoder)
        index.add(list(texts), ids=ids, metadatas=metadatas)
        return index

    # ------------------------------------------------------------------ properties
    @property
    def encoder(self) -> Encoder:
        return self._encoder

    @property
    def client(self) -> QdrantClient:
        return self._client

    @property
    def collection(self) -> str:
        return self._collection

    @property
    def path(self) -> Path | None:
        """None: the index lives in Qdrant, not in a folder colcade manages."""
        return None

    def __len__(self) -> int:
        with _calls(self._where):
            return int(self._client.count(self._collection, exact=True).count)

    def __repr__(self) -> str:
        return (
            f"QdrantIndex({self._collection!r} at {self._where}, {len(self)} documents, encoder={self._encoder.name!r})"
        )

    def __enter__(self) -> QdrantIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the client if this index made it (a client you passed in stays yours)."""
        _close(self._client, self._owns_client)

    def refresh(self) -> None:
        """Nothing to do: every call reads Qdrant's current state."""

    # ------------------------------------------------------------------ writing
    def add(
        self,
        texts: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[dict[str, Any]] | None = None,
        *,
        tokens: Sequence[np.ndarray] | None = None,
        dense: np.ndarray | None = None,
        batch_size: int = 64,
        show_progress: bool | None = None,
        images: Sequence[Any] | None = None,
    ) -> list[str]:
        """Add passages, as ``LateIndex.add``; ids already in the collection are an error.

        Qdrant commits each request on its own: passages go in ``batch_size`` at a time, so an
        interrupted ``add`` leaves the batches already sent. Run the same ``upsert`` again to
        finish it (it is idempotent).
        """
        return self._write(texts, ids, metadatas, tokens, dense, batch_size, show_progress, upsert=False, images=images)

    def upsert(
        self,
        texts: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[dict[str, Any]] | None = None,
        *,
        tokens: Sequence[np.ndarray] | None = None,
        dense: np.ndarray | None = None,
        batch_size: int = 64,
        show_progress: bool | None = None,
        images: Sequence[Any] | None = None,
    ) -> list[str]:
        """Like ``add``, but passages whose id exists replace the old ones; without ``metadatas``
        a replaced passage keeps its metadata."""
        if ids is None:
            raise InvalidInputError("upsert needs ids: they say which passages to replace")
        return self._write(texts, ids, metadatas, tokens, dense, batch_size, show_progress, upsert=True, images=images)

    def _write(
        self,
        texts: Sequence[str] | None,
        ids: Sequence[str] | None,
        metadatas: Sequence[dict[str, Any]] | None,
        tokens: Sequence[np.ndarray] | None,
        dense: np.ndarray | None,
        batch_size: int,
        show_progress: bool | None,
        *,
        upsert: bool,
        images: Sequence[Any] | None = None,
    ) -> list[str]:
        if images is not None:
            images = check_images(self._encoder, images, tokens)
        n = count_passages(texts, tokens) if images is None else count_passages(texts, images, "images")
        ids_ = check_ids(ids, n)
        texts_ = check_texts(texts, n, required=tokens is None and images is None, ids=ids_)
        keep = upsert and metadatas is None
        metas = check_metadatas(metadatas, n, ids_)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise InvalidInputError(f"batch_size must be a positive integer, but got {batch_size!r}")
        dense_all = check_dense(dense, n, self._info["dense_dim"], "dense vectors") if dense is not None else None
        if tokens is not None:  # check every given vector before the first request
            tokens = [storable(t, self._info["dim"], ids_[i]) for i, t in enumerate(tokens)]
        if not n:
            return []
        if not upsert:
            existing = self._stored(ids_, ["colcade_id"])
            if existing:
                shown = ", ".join(repr(i) for i in list(existing)[:5])
                raise DuplicateIdError(
                    f"{len(existing)} ids are already in the collection ({shown}); use upsert() to replace them"
                )
        disable = (n < (256 if tokens is None else 20_000)) if show_progress is None else not show_progress
        with tqdm(total=n, desc="encoding" if tokens is None else "writing", unit="passage", disable=disable) as bar:
            for start in range(0, n, batch_size):
                stop = min(n, start + batch_size)
                if tokens is None:
                    out = (
                        self._encoder.encode_images(images[start:stop])  # type: ignore[attr-defined]
                        if images is not None
                        else self._encoder.encode_documents(texts_[start:stop])
                    )
                    part_tokens = [storable(t, self._info["dim"], ids_[start + i]) for i, t in enumerate(out.tokens)]
                    part_dense = out.dense
                else:
                    part_tokens = list(tokens[start:stop])
                    part_dense = np.stack([pool(t) for t in part_tokens])
                if dense_all is not None:
                    part_dense = dense_all[start:stop]
                part_dense = check_dense(part_dense, stop - start, self._info["dense_dim"], "dense vectors")
                part_metas = metas[start:stop]
                if keep:
                    old = self._stored(ids_[start:stop], ["metadata"])
                    part_metas = [old[i]["metadata"] if i in old else m for i, m in zip(ids_[start:stop], part_metas)]
                self._send(ids_[start:stop], texts_[start:stop], part_metas, part_tokens, part_dense)
                bar.update(stop - start)
        return list(ids_)

    def _send(
        self, ids: list[str], texts: list[str], metas: list[dict[str, Any]], tokens: list[np.ndarray], dense: np.ndarray
    ) -> None:
        """Upsert these passages, in as many requests as keep each under ``REQUEST_BYTES``."""
        from qdrant_client import models

        order = time.time_ns()
        points: list[models.PointStruct] = []
        size = 0
        for i, id_ in enumerate(ids):
            payload = {"colcade_id": id_, "text": texts[i], "metadata": metas[i], "colcade_order": order + i}
            # JSON spends up to ~24 bytes a float (Python's repr); the payload about its text's length.
            cost = 24 * (tokens[i].size + dense.shape[1]) + 2 * len(texts[i]) + len(json.dumps(metas[i])) + 200
            if points and size + cost > REQUEST_BYTES:
                self._upsert(points)
                points, size = [], 0
            vector = {requests.DENSE: dense[i].tolist(), requests.TOKENS: tokens[i].tolist()}
            points.append(models.PointStruct(id=requests.point_id(id_), vector=vector, payload=payload))
            size += cost
        if points:
            self._upsert(points)

    def _upsert(self, points: list[Any]) -> None:
        with _calls(self._where):
            self._client.upsert(self._collection, points=points, wait=True)

    def delete(self, ids: Sequence[str], *, missing_ok: bool = False) -> int:
        """Delete passages by id; returns how many. Unknown ids are an error and nothing is
        deleted, unless ``missing_ok`` (then they are skipped)."""
        from qdrant_client import models

        ids_ = list(dict.fromkeys(id_list(ids, "delete")))
        if not ids_:
            return 0
        found = self._stored(ids_, ["colcade_id"])
        missing = [i for i in ids_ if i not in found]
        if missing and not missing_ok:
            raise UnknownIdError(f"{len(missing)} ids are not in the collection ({', '.join(map(repr, missing[:5]))})")
        with _calls(self._where):
            for start in range(0, len(found), _PAGE):
                chunk: list[models.ExtendedPointId] = [requests.point_id(i) for i in list(found)[start : start + _PAGE]]
                self._client.delete(self._collection, points_selector=models.PointIdsList(points=chunk), wait=True)
        return len(found)

    def copy_from(
        self,
        index: LateIndex,
        batch_size: int = 256,
        show_progress: bool | None = None,
        *,
        remove_missing: bool = False,
    ) -> int:
        """Copy the passages of a ``LateIndex`` here, with their stored vectors (decoded when
        compressed; nothing is encoded again); returns how many were written.

        A passage already here with the same text and metadata is skipped, one whose text or
        metadata changed is replaced: after an interruption the same call goes on where it
        stopped, and after the index changed it sends only what changed. ``remove_missing``
        also deletes the passages the index no longer holds, so the collection mirrors it.
        The two must share an encoder.
        """
        if describe(index.encoder)["fingerprint"] != self._info["fingerprint"]:
            raise EncoderMismatchError(
                f"the index was built with {index.encoder.name!r} and this collection with {self._encoder.name!r}: "
                "create the collection with the index's encoder (QdrantIndex.create(..., encoder=index.encoder))"
            )
        written = 0
        disable = (len(index) < 20_000) if show_progress is None else not show_progress
        with tqdm(total=len(index), desc="copying", unit="passage", disable=disable) as bar:
            for batch in index.passages(batch_size):
                here = self._stored(batch.ids, ["text", "metadata"])
                todo = [
                    i
                    for i, id_ in enumerate(batch.ids)
                    if id_ not in here
                    or here[id_].get("text") != batch.texts[i]
                    or here[id_].get("metadata") != batch.metadatas[i]
                ]
                if todo:
                    self._send(
                        [batch.ids[i] for i in todo],
                        [batch.texts[i] for i in todo],
                        [batch.metadatas[i] for i in todo],
                        [batch.tokens[i] for i in todo],
                        batch.dense[todo],
                    )
                written += len(todo)
                bar.update(len(batch))
        if remove_missing:
            kept = set(index.ids())
            gone = [id_ for id_ in self.ids() if id_ not in kept]
            self.delete(gone, missing_ok=True)
        return written

    # ------------------------------------------------------------------ reading
    def search(
        self,
        query: str | EncodedQuery,
        k: int = 10,
        filter: dict[str, Any] | None = None,
        *,
        n_shortlist: int | None = None,
        n_prefilter: int | None = None,
        exhaustive: bool = False,
        hybrid: bool | str | float | None = None,
        n_lexical: int | None = None,
        n_cells: int | None = None,
        text: str | None = None,
    ) -> Hits:
        """The ``k`` passages with the highest MaxSim score, best first, as ``LateIndex.search``.

        One Qdrant query runs the cascade (``requests.query``): ``n_shortlist`` passages by the
        dense vector (HNSW), ``n_prefilter`` of those by MaxSim over the tokens' binary
        quantization, then exact MaxSim over the stored tokens. ``exhaustive=True`` scores every
        passage exactly. Searches rank by MaxSim alone: hybrid search (``hybrid``, ``n_lexical``)
        needs a ``LateIndex``'s lexical index, and ``n_cells`` its token-level candidates.
        """
        widths: dict[str, Any] = {
            "n_shortlist": n_shortlist,
            "n_prefilter": n_prefilter,
            "exhaustive": exhaustive,
            "hybrid": hybrid,
            "n_lexical": n_lexical,
            "n_cells": n_cells,
        }
        return self.search_batch([query], k, filter, texts=None if text is None else [text], **widths)[0]

    def search_batch(
        self,
        queries: Sequence[str | EncodedQuery],
        k: int = 10,
        filter: dict[str, Any] | None = None,
        n_threads: int | None = None,
        texts: Sequence[str] | None = None,
        **widths: Any,
    ) -> list[Hits]:
        """``search`` for many queries in one Qdrant request (``n_threads`` is accepted and unused)."""
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0:
            raise InvalidInputError(f"k must be a positive integer, but got {k!r}")
        if texts is not None and len(texts) != len(queries):
            raise InvalidInputError(f"texts must give one text a query: {len(texts)} for {len(queries)} queries")
        plan = _plan(int(k), widths)
        qfilter = to_qdrant(filter) if filter is not None else None
        encoded = [self._encode_query(q) for q in queries]
        t0 = time.perf_counter()
        answers: list[Any] = []
        for group in _by_size(encoded, plan.exhaustive):
            request = [requests.query(e, int(k), plan, qfilter) for e in group]
            with _calls(self._where):
                answers += self._client.query_batch_points(self._collection, requests=request)
        ms = (time.perf_counter() - t0) * 1e3 / max(1, len(encoded))
        stage = "qdrant exhaustive" if plan.exhaustive else "qdrant dense->binary->maxsim"
        out = []
        for e, answer in zip(encoded, answers):
            nq = len(e.tokens)
            hits = [
                Hit(
                    id=p.payload["colcade_id"],
                    score=float(p.score),
                    text=p.payload.get("text", ""),
                    metadata=p.payload.get("metadata") or {},
                    normalized_score=float(p.score) / nq,
                )
                for p in answer.points
                if p.payload is not None
            ]
            out.append(Hits(hits, [StageStats(stage, plan.n_shortlist, len(hits), ms)]))
        return out

    def _encode_query(self, query: str | EncodedQuery) -> EncodedQuery:
        if isinstance(query, EncodedQuery):
            tokens = check_tokens(query.tokens, self._info["dim"], "query token vectors")
            dense = check_dense(query.dense, 1, self._info["dense_dim"], "query dense vector")[0]
            return EncodedQuery(dense=dense, tokens=tokens)
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(f"query must be a non-empty string or an EncodedQuery, but got {query!r}")
        check_unicode(query, "the query")
        return self._encode_query(self._encoder.encode_query(query))

    def get(self, ids: Sequence[str], *, missing_ok: bool = False) -> list[dict[str, Any]]:
        """Stored text and metadata of passages by id (``{"id", "text", "metadata"}``), in the
        order asked. Unknown ids are an error, unless ``missing_ok``."""
        ids_ = id_list(ids, "get")
        found = self._stored(ids_, ["colcade_id", "text", "metadata"])
        missing = [i for i in ids_ if i not in found]
        if missing and not missing_ok:
            raise UnknownIdError(f"{len(missing)} ids are not in the collection ({', '.join(map(repr, missing[:5]))})")
        return [{"id": i, "text": found[i]["text"], "metadata": found[i]["metadata"]} for i in ids_ if i in found]

    def ids(self, filter: dict[str, Any] | None = None) -> list[str]:
        """Ids of the passages (those matching ``filter``), in the order they were written."""
        rows = [(p["colcade_order"], p["colcade_id"]) for p in self._scroll(filter, ["colcade_id", "colcade_order"])]
        return [id_ for _, id_ in sorted(rows)]

    def distinct(self, *keys: str, filter: dict[str, Any] | None = None) -> set[tuple[Any, ...]]:
        """The distinct combinations of metadata ``keys`` among passages (matching ``filter``)."""
        if not keys:
            raise InvalidInputError('distinct needs one or more metadata keys, e.g. index.distinct("source")')
        out = set()
        for payload in self._scroll(filter, ["metadata"]):
            meta = payload.get("metadata") or {}
            out.add(tuple(_hashable(meta.get(k)) for k in keys))
        return out

    def stats(self) -> IndexStats:
        """Counts and the encoder; Qdrant keeps the sizes (``extra``: what its collection info says)."""
        with _calls(self._where):
            info = self._client.get_collection(self._collection)
        return IndexStats(
            documents=int(info.points_count or 0),
            deleted=0,  # Qdrant's optimizer vacuums deleted points on its own
            tokens=0,  # not counted by Qdrant; see extra["indexed_vectors"]
            segments=int(info.segments_count or 0),
            encoder=dict(self._info),
            bytes_on_disk=0,
            shortlist="qdrant hnsw",
            extra={
                "backend": "qdrant",
                "where": self._where,
                "collection": self._collection,
                "status": str(info.status.value if hasattr(info.status, "value") else info.status),
                "indexed_vectors": info.indexed_vectors_count,
            },
        )

    # ------------------------------------------------------------------ helpers
    def _stored(self, ids: Sequence[str], fields: list[str]) -> dict[str, dict[str, Any]]:
        """Payload ``fields`` of the points of these ids that exist, by id."""
        out: dict[str, dict[str, Any]] = {}
        with _calls(self._where):
            for start in range(0, len(ids), _PAGE):
                chunk = [requests.point_id(i) for i in ids[start : start + _PAGE]]
                for p in self._client.retrieve(self._collection, ids=chunk, with_payload=[*fields, "colcade_id"]):
                    if p.payload is not None:
                        out[p.payload["colcade_id"]] = p.payload
        return out

    def _scroll(self, filter: dict[str, Any] | None, fields: list[str]) -> Iterator[dict[str, Any]]:
        qfilter = to_qdrant(filter) if filter is not None else None
        offset = None
        while True:
            with _calls(self._where):
                points, offset = self._client.scroll(
                    self._collection, scroll_filter=qfilter, limit=_PAGE, offset=offset, with_payload=fields
                )
            for p in points:
                if p.payload is not None:
                    yield p.payload
            if offset is None:
                return


def _by_size(encoded: list[EncodedQuery], exhaustive: bool) -> Iterator[list[EncodedQuery]]:
    """Queries in groups whose request stays under ``REQUEST_BYTES`` (the cascade sends a query's
    tokens twice, at up to ~24 bytes a float)."""
    group: list[EncodedQuery] = []
    size = 0
    for e in encoded:
        cost = 24 * (e.tokens.size * (1 if exhaustive else 2) + e.dense.size) + 500
        if group and size + cost > REQUEST_BYTES:
            yield group
            group, size = [], 0
        group.append(e)
        size += cost
    if group:
        yield group


def _plan(k: int, widths: dict[str, Any]) -> requests.Widths:
    unknown = set(widths) - {"n_shortlist", "n_prefilter", "exhaustive", "hybrid", "n_lexical", "n_cells"}
    if unknown:
        raise InvalidInputError(f"unknown search argument(s) {', '.join(sorted(unknown))}")
    if widths.get("hybrid") not in (None, False) or widths.get("n_lexical"):
        raise InvalidInputError(
            "hybrid search (MaxSim fused with BM25) needs a LateIndex's lexical index; the Qdrant backend ranks "
            "by MaxSim alone: leave hybrid and n_lexical unset"
        )
    if widths.get("n_cells"):
        raise InvalidInputError("n_cells (token-level candidates) is a LateIndex option; Qdrant shortlists by dense")
    for name in ("n_shortlist", "n_prefilter"):
        value = widths.get(name)
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0):
            raise InvalidInputError(f"{name} must be a positive integer, but got {value!r}")
    return requests.Widths.of(k, widths.get("n_shortlist"), widths.get("n_prefilter"), bool(widths.get("exhaustive")))


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _client(location: Any, must_exist: bool = False) -> tuple[QdrantClient, bool]:
    """A client for ``location`` and whether this index made it (and so closes it). A local-mode
    folder that ``must_exist`` is not created when it does not."""
    qdrant_client = require("qdrant_client", '"colcade[qdrant]"', "the Qdrant backend")
    if isinstance(location, qdrant_client.QdrantClient):
        return location, False
    if not isinstance(location, (str, os.PathLike)) or not str(location):
        raise InvalidInputError(f"location must be a QdrantClient, a URL, ':memory:' or a folder, but got {location!r}")
    text = str(location)
    if text == ":memory:":
        return qdrant_client.QdrantClient(location=":memory:"), True
    if text.startswith(("http://", "https://")):
        return qdrant_client.QdrantClient(url=text, api_key=os.environ.get("QDRANT_API_KEY")), True
    if must_exist and not (Path(text) / "meta.json").is_file():
        raise IndexNotFoundError(f"{text} is not a Qdrant local-mode folder (it has no meta.json)")
    try:
        return qdrant_client.QdrantClient(path=text), True
    except RuntimeError as exc:  # local mode's folder lock
        raise BackendUnavailableError(
            f"Qdrant's local mode folder {text} is open in another client or process ({exc}); local mode is for "
            "one process: use a Qdrant server for several"
        ) from None


def _check_name(collection: Any) -> None:
    if not isinstance(collection, str) or not collection.strip() or "/" in collection:
        raise InvalidInputError(f"collection must be a non-empty name without '/', but got {collection!r}")


def _is_local(client: QdrantClient) -> bool:
    return getattr(getattr(client, "_client", None), "location", None) is not None


def _describe_client(client: QdrantClient) -> str:
    inner = getattr(client, "_client", None)
    location = getattr(inner, "location", None)
    if location is not None:  # local mode
        return "local mode in memory" if location == ":memory:" else f"local mode folder {location}"
    rest = getattr(inner, "rest_uri", None)
    return f"Qdrant {rest}" if rest else "Qdrant"


def _close(client: QdrantClient, owns: bool) -> None:
    if owns:
        with contextlib.suppress(Exception):
            client.close()


def _check_vectors(config: Any, stored: dict[str, Any], collection: str) -> None:
    vectors = config.params.vectors
    dims = {name: getattr(vectors.get(name), "size", None) for name in (requests.DENSE, requests.TOKENS)}
    want = {requests.DENSE: stored.get("dense_dim"), requests.TOKENS: stored.get("dim")}
    if dims != want:
        raise EncoderMismatchError(
            f"Qdrant collection {collection!r} has vectors {dims}, but its colcade metadata says {want}: "
            "it was changed outside colcade; recreate it"
        )


@contextlib.contextmanager
def _calls(where: str) -> Iterator[None]:
    """Qdrant's transport errors as colcade errors that say where and what to check."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        yield
    except ResponseHandlingException as exc:
        raise BackendUnavailableError(f"cannot reach {where}: {exc}; check the URL and that Qdrant is running") from exc
    except UnexpectedResponse as exc:
        raise ColcadeError(f"{where} answered {exc.status_code}: {exc.content!r}") from exc
    except Exception as exc:
        if isinstance(exc, ColcadeError):
            raise
        if type(exc).__module__.startswith("grpc"):  # prefer_grpc=True clients
            raise BackendUnavailableError(f"{where} failed over gRPC: {exc}") from exc
        if isinstance(exc, ValueError) and "not found" in str(exc):  # local mode: a deleted collection
            raise IndexNotFoundError(f"{where}: {exc}") from exc
        raise
