"""LateIndex: the late-interaction index users hold. add / upsert / delete / search / compact."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from colcade.encoders import EncodedQuery, Encoder, default_encoder, describe, from_manifest, pool
from colcade.encoders.base import check_dense, check_tokens
from colcade.engine import cascade, dense_codes, filters, fusion
from colcade.errors import (
    DuplicateIdError,
    EncoderMismatchError,
    IndexExistsError,
    IndexLockedError,
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
    passage_bytes,
    storable,
)
from colcade.results import Hit, Hits, IndexStats, Passages, StageStats
from colcade.storage import memory
from colcade.storage.locking import DEFAULT_TIMEOUT
from colcade.storage.segments import SegmentWriter
from colcade.storage.store import State, Store

PathLike = str | os.PathLike[str]


class LateIndex:
    """A late-interaction index answering queries with a shortlist -> prefilter -> rerank cascade.

    >>> import numpy as np
    >>> from colcade import LateIndex, PrecomputedEncoder
    >>> index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=4))
    >>> index.add(["red", "blue"], ids=["r", "b"], tokens=[np.eye(4)[:1], np.eye(4)[1:3]])
    ['r', 'b']
    >>> hits = index.search(index.encoder.query(np.eye(4)[1:2]), k=1)
    >>> hits[0].id, hits[0].score
    ('b', 1.0)
    """

    def __init__(self, store: Store, encoder: Encoder) -> None:
        """Use ``LateIndex.create``, ``LateIndex.open`` or ``LateIndex.in_memory``."""
        self._store = store
        self._encoder = encoder

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        path: PathLike,
        encoder: Encoder | None = None,
        *,
        lock_timeout: float = DEFAULT_TIMEOUT,
        storage: str = "compressed",
        nbits: float | None = None,
    ) -> LateIndex:
        """A new, empty index in the folder ``path`` (which must not exist or be empty).

        Without ``encoder``, colcade's embedded default encoder is used. ``lock_timeout``: how
        many seconds a write waits for another process's write before ``IndexLockedError``.
        ``storage``: ``"compressed"`` (token vectors as a centroid id plus ``nbits`` residual
        bits a dimension on average, rotated to where they matter most: ~8-9x smaller at the
        default, 1.75; 2 in every dimension where ``dim`` is under 64 or not a multiple of 16;
        BENCHMARKS.md measures what it costs) or ``"float16"`` (exact MaxSim scores).
        """
        encoder = encoder if encoder is not None else default_encoder()
        return cls(Store.create(Path(path), describe(encoder), lock_timeout, storage=storage, nbits=nbits), encoder)

    @classmethod
    def in_memory(
        cls, encoder: Encoder | None = None, *, storage: str = "compressed", nbits: float | None = None
    ) -> LateIndex:
        """An index that lives in this process only (tests, notebooks, small corpora)."""
        encoder = encoder if encoder is not None else default_encoder()
        return cls(Store.create(None, describe(encoder), storage=storage, nbits=nbits), encoder)

    @classmethod
    def open(
        cls, path: PathLike, encoder: Encoder | None = None, *, lock_timeout: float = DEFAULT_TIMEOUT
    ) -> LateIndex:
        """Open an index saved at ``path``; any number of processes may hold it open at once.

        ``encoder`` must be the model the index was built with (same fingerprint); without it
        the encoder is rebuilt from the manifest where colcade knows how (precomputed vectors,
        the embedded default). Writes from all handles are serialized by a lock on the folder
        and each applies to the latest committed state; searches see other processes' commits.
        """
        store = Store.open(Path(path), lock_timeout)
        stored = store.encoder_info
        if encoder is None:
            encoder = from_manifest(stored)
        elif describe(encoder)["fingerprint"] != stored["fingerprint"]:
            store.close()
            raise EncoderMismatchError(
                f"{path} was built with encoder {stored['name']!r} (dim {stored['dim']}, fingerprint "
                f"{stored['fingerprint']}), not {encoder.name!r} (dim {encoder.dim}, fingerprint "
                f"{encoder.fingerprint}): open it with the same encoder, or rebuild the index"
            )
        return cls(store, encoder)

    @classmethod
    def open_or_create(
        cls,
        path: PathLike,
        encoder: Encoder | None = None,
        *,
        lock_timeout: float = DEFAULT_TIMEOUT,
        storage: str = "compressed",
        nbits: float | None = None,
    ) -> LateIndex:
        """Open the index at ``path``, or create it there if there is none (a notebook cell or a
        script that runs twice). ``storage`` and ``nbits`` apply only when it is created."""
        for _ in range(3):  # another process may create it between the two calls
            try:
                return cls.open(path, encoder, lock_timeout=lock_timeout)
            except IndexNotFoundError:
                pass
            try:
                return cls.create(path, encoder, lock_timeout=lock_timeout, storage=storage, nbits=nbits)
            except IndexExistsError:
                continue
        return cls.open(path, encoder, lock_timeout=lock_timeout)

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        *,
        encoder: Encoder | None = None,
        path: PathLike | None = None,
    ) -> LateIndex:
        """A new index of ``texts``: in memory, or in a new folder at ``path``.

        The argument order is LangChain's ``from_texts(texts, metadatas, ids)``, as in both adapters.
        """
        index = cls.create(path, encoder=encoder) if path is not None else cls.in_memory(encoder=encoder)
        index.add(list(texts), ids=ids, metadatas=metadatas)
        return index

    @property
    def encoder(self) -> Encoder:
        """The encoder that turns text into vectors for this index."""
        return self._encoder

    @property
    def path(self) -> Path | None:
        return self._store.path

    def __len__(self) -> int:
        return self._store.refresh().n_live

    def refresh(self) -> None:
        """Load what other handles and processes committed (searches do this on their own)."""
        self._store.refresh()

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "in memory"
        return f"LateIndex({where}, {len(self)} documents, encoder={self._encoder.name!r})"

    def __enter__(self) -> LateIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._store.close()

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
        """Add passages; returns their ids (generated when not given).

        Give ``texts`` to encode them with the index's encoder, or precomputed ``tokens`` (one
        ``[t_i, dim]`` matrix per passage) and optionally ``dense`` (``[n, dense_dim]``; the
        mean token otherwise), with or without ``texts`` to store; or ``images`` (paths or PIL
        images: pages) for an encoder that embeds images (``FastEmbedMultimodalEncoder``), with
        ``texts`` to store beside them if you like (a caption, the page's text). Ids already in the index are
        an error (use ``upsert``). Either every passage is added or none is: vectors are
        streamed to disk batch by batch (memory does not grow with the list) and committed once.

        >>> import numpy as np
        >>> from colcade import LateIndex, PrecomputedEncoder
        >>> index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=2))
        >>> index.add(["a page"], ids=["p1"], metadatas=[{"page": 1}], tokens=[np.ones((3, 2))])
        ['p1']
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
        """Like ``add``, but passages whose id exists replace the old ones (in one commit).

        Without ``metadatas``, a replaced passage keeps its metadata (a new one gets ``{}``).
        """
        if ids is None:
            raise InvalidInputError("upsert needs ids: they say which passages to replace")
        return self._write(texts, ids, metadatas, tokens, dense, batch_size, show_progress, upsert=True, images=images)

    def replace(
        self,
        filter: dict[str, Any],
        texts: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[dict[str, Any]] | None = None,
        *,
        tokens: Sequence[np.ndarray] | None = None,
        dense: np.ndarray | None = None,
        batch_size: int = 64,
        show_progress: bool | None = None,
        checkpoint: str | None = None,
    ) -> list[str]:
        """Swap the passages matching ``filter`` for these in one commit (an upsert by id too).

        A search sees the old passages or the new ones, never neither (``colcade index`` uses
        this for a changed file). ``checkpoint`` names the write and makes its progress
        durable batch by batch: after an interrupt, the same call with the same passages
        resumes where it stopped instead of encoding everything again.

        >>> import numpy as np
        >>> from colcade import LateIndex, PrecomputedEncoder
        >>> index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=2))
        >>> index.add(ids=["a#0", "a#1"], metadatas=[{"file": "a"}] * 2, tokens=[np.ones((1, 2))] * 2)
        ['a#0', 'a#1']
        >>> index.replace({"file": "a"}, ids=["a#0"], metadatas=[{"file": "a"}], tokens=[np.ones((2, 2))])
        ['a#0']
        >>> index.ids()
        ['a#0']
        """
        if not isinstance(filter, dict) or not filter:
            raise InvalidInputError(
                f"replace needs a non-empty filter saying which passages to replace, but got {filter!r}"
            )
        if checkpoint is not None and (not isinstance(checkpoint, str) or not checkpoint.replace("-", "").isalnum()):
            raise InvalidInputError(f"checkpoint must be a name of letters, digits and dashes, but got {checkpoint!r}")
        if texts is None and tokens is None:
            texts = []
        return self._write(
            texts,
            ids,
            metadatas,
            tokens,
            dense,
            batch_size,
            show_progress,
            upsert=True,
            remove=filters.to_sql(filter),
            checkpoint=checkpoint,
        )

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
        remove: tuple[str, list[Any]] | None = None,
        checkpoint: str | None = None,
        images: Sequence[Any] | None = None,
    ) -> list[str]:
        if images is not None:
            images = check_images(self._encoder, images, tokens)
        n = count_passages(texts, tokens) if images is None else count_passages(texts, images, "images")
        ids = check_ids(ids, n)
        texts_out = check_texts(texts, n, required=tokens is None and images is None, ids=ids)
        # An upsert without metadatas keeps each replaced passage's own (read at commit, under the lock).
        keep_metadata = upsert and remove is None and metadatas is None
        metadatas = check_metadatas(metadatas, n, ids)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise InvalidInputError(f"batch_size must be a positive integer, but got {batch_size!r}")
        if n == 0 and remove is None:
            return []
        if not upsert:  # fail before encoding; the commit checks again under the write lock
            self._refuse_existing(ids)
        dense_all = check_dense(dense, n, self._store.dense_dim, "dense vectors") if dense is not None else None
        material = functools.partial(passage_bytes, ids, texts_out, tokens, dense_all)
        writer = self._open_writer(checkpoint, material, n)
        long_work = 256 if tokens is None else 20_000  # encoding is slow; writing given vectors is not
        disable = (n < long_work) if show_progress is None else not show_progress
        try:
            desc = "encoding" if tokens is None else "writing"
            with tqdm(total=n, initial=writer.n, desc=desc, unit="passage", disable=disable) as bar:
                for start, stop in self._stream(writer, ids, texts_out, tokens, dense_all, batch_size, images):
                    for i in range(start, stop):
                        writer.note(material(i))
                    if checkpoint is not None:
                        writer.checkpoint()
                    if tokens is None:
                        memory.release()  # each encoded chunk frees ~100 MB of scattered arrays
                    bar.update(stop - start)
            memory.release()  # before the codec and the commit: encoding left the heap fragmented
            codec = self._store.codec_for(writer, self._store.refresh().segments)
            if codec is not None:
                writer.compress(codec)
        except BaseException as exc:
            if checkpoint is None or isinstance(exc, InvalidInputError):
                writer.abort()  # else kept, so the same call resumes
            self._store.release(writer)
            raise
        operation = "replace" if remove is not None else "upsert" if upsert else "add"
        self._store.commit(
            writer,
            ids,
            texts_out,
            metadatas,
            upsert=upsert,
            remove_where=remove,
            operation=operation,
            keep_metadata=keep_metadata,
        )
        return list(ids)

    def _refuse_existing(self, ids: list[str]) -> None:
        with self._store.reading() as (_, db):
            existing = self._store.live_keys_for_ids(db, ids)
        if existing:
            shown = ", ".join(repr(i) for i in list(existing)[:5])
            raise DuplicateIdError(
                f"{len(existing)} ids are already in the index ({shown}); use upsert() to replace them"
            )

    def _stream(
        self,
        writer: SegmentWriter,
        ids: list[str],
        texts: list[str],
        tokens: Sequence[np.ndarray] | None,
        dense: np.ndarray | None,
        batch_size: int,
        images: Sequence[Any] | None = None,
    ) -> Iterator[tuple[int, int]]:
        """Encode (or check given vectors) chunk by chunk from where ``writer`` stands, appending each;
        yields each chunk's (start, stop) once it is in the writer."""
        n = len(ids)
        # Passages between checkpoints; images go to the model batch_size at a time (a GPU's memory).
        chunk = batch_size if images is not None else batch_size * 2 if tokens is None else 4096
        for start in range(writer.n, n, chunk):
            stop = min(n, start + chunk)
            if images is not None:
                encoded = self._encoder.encode_images(images[start:stop])  # type: ignore[attr-defined]
                part_tokens, part_dense = list(encoded.tokens), encoded.dense
            elif tokens is None:
                part_tokens, part_dense = self._encode(texts[start:stop], batch_size)
            else:
                part_tokens, part_dense = list(tokens[start:stop]), None
            part_tokens = [storable(t, self._store.dim, ids[start + i]) for i, t in enumerate(part_tokens)]
            if dense is not None:
                part_dense = dense[start:stop]
            elif part_dense is None:
                part_dense = np.stack([pool(t) for t in part_tokens])
            writer.append(part_tokens, check_dense(part_dense, stop - start, self._store.dense_dim, "dense vectors"))
            yield start, stop

    def _open_writer(self, checkpoint: str | None, material: Any, n: int) -> SegmentWriter:
        """A segment writer; a checkpoint resumes only if it staged exactly these first passages."""
        writer = self._store.writer(checkpoint)
        if writer.n:
            for i in range(min(writer.n, n)):
                writer.note(material(i))
            if writer.n > n or writer.digest() != writer.resumed_digest:  # other passages: start over
                writer.abort()
                self._store.release(writer)
                writer = self._store.writer(checkpoint)
        return writer

    def _encode(self, texts: list[str], batch_size: int) -> tuple[list[np.ndarray], np.ndarray]:
        # Long texts first: batches of similar length waste less padding.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        tokens: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
        dense = np.empty((len(texts), self._store.dense_dim), np.float32)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            out = self._encoder.encode_documents([texts[i] for i in batch])
            for j, i in enumerate(batch):
                tokens[i] = out.tokens[j]
            dense[batch] = out.dense
        return tokens, dense

    def delete(self, ids: Sequence[str], *, missing_ok: bool = False) -> int:
        """Delete passages by id; returns how many. Unknown ids are an error and nothing is
        deleted, unless ``missing_ok`` (then they are skipped)."""
        ids = id_list(ids, "delete")
        return self._store.delete(ids, missing_ok) if ids else 0

    def compact(self) -> None:
        """Rewrite the index without deleted passages (and with one segment).

        Safe while other processes search or write: it holds the write lock, rewrites the
        latest committed state, and removes only what no committed state lists.
        """
        self._store.compact()

    # ------------------------------------------------------------------ reading
    def search(
        self,
        query: str | EncodedQuery,
        k: int = 10,
        filter: dict[str, Any] | None = None,
        *,
        n_shortlist: int | None = None,
        n_prefilter: int | None = None,
        n_cells: int | None = None,
        exhaustive: bool = False,
        hybrid: bool | str | float | None = None,
        n_lexical: int | None = None,
        text: str | None = None,
    ) -> Hits:
        """The ``k`` passages with the highest MaxSim score, best first.

        ``query`` is text (encoded with the index's encoder) or an ``EncodedQuery``.
        ``filter`` restricts the search to passages whose metadata match (see
        ``colcade.engine.filters``) before any ranking. ``n_shortlist`` and ``n_prefilter`` override
        the stage widths; ``n_cells`` how many centroids each query token takes token-level
        candidates from, in a compressed index whose dense shortlist is in use (default 1, 4 above
        50k passages; 0: none);
        ``exhaustive=True`` scores every passage (exact MaxSim).

        ``hybrid`` fuses MaxSim with BM25 from the index's lexical index: ``True`` (a convex mix,
        ``fusion.DEFAULT_WEIGHT`` on the lexical side), ``"rrf"`` (reciprocal-rank fusion) or a
        weight between 0 and 1; hits then carry the fused score. By default (``None``) a search
        with words to match (a text query, or ``text=``) is hybrid and an ``EncodedQuery`` alone or
        ``exhaustive=True`` is MaxSim alone; ``False`` is MaxSim alone always. The lexical index's best
        ``n_lexical`` (default ``max(100, 10k)`` when hybrid) join the candidates in stage 1;
        ``n_lexical`` alone adds them without fusing. ``text``: the words to match when ``query``
        is an ``EncodedQuery`` (given with a text query, it is what the lexical side matches).
        A fused score is relative to the query's candidates (the best is near 1 even for a poor
        match): for absolute thresholds use ``hybrid=False`` and ``normalized_score``.
        The result's ``stats`` give each stage's counts and milliseconds.
        """
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0:
            raise InvalidInputError(f"k must be a positive integer, but got {k!r}")
        if text is not None and not isinstance(text, str):
            raise InvalidInputError(f"text must be a string (the query's words), but got {type(text).__name__}")
        words = text if text is not None else query if isinstance(query, str) else None
        if hybrid is None:  # the default: hybrid where there are words to match (BENCHMARKS.md, issue 10)
            hybrid = bool(words and words.strip()) and not exhaustive and n_lexical != 0
        fused = hybrid is not False
        weight = fusion.weight_of(hybrid) if fused else None
        if n_lexical is None:
            n_lexical = max(100, 10 * int(k)) if fused else 0
        elif not isinstance(n_lexical, (int, np.integer)) or isinstance(n_lexical, bool) or n_lexical < 0:
            raise InvalidInputError(f"n_lexical must be a non-negative integer, but got {n_lexical!r}")
        if fused and n_lexical == 0:
            raise InvalidInputError("hybrid search needs lexical candidates: n_lexical must be at least 1")
        encoded = self._encode_query(query)  # an empty or malformed query is refused here first
        if n_lexical and not (words and words.strip()):
            raise InvalidInputError("lexical candidates need the query's words: pass text= with an EncodedQuery")
        where = filters.to_sql(filter) if filter is not None else None
        for _ in range(5):
            t0 = time.perf_counter()
            with self._store.reading() as (state, db):  # the filter's and the lexical keys agree with the state
                allowed = state.positions_of(self._store.keys_where(db, *where)) if where else None
                lexical = None
                if n_lexical:
                    keys, bm25 = self._store.lexical(db, fusion.query_terms(words or ""), n_lexical, where)
                    lexical = (*state.aligned_positions(keys, bm25, allowed), (time.perf_counter() - t0) * 1e3)
            hits = self._search_state(
                state, encoded, int(k), allowed, (n_shortlist, n_prefilter, n_cells), exhaustive, lexical, fused, weight
            )
            if hits is not None:
                return hits
        raise IndexLockedError("the index was compacted under every attempt of this search; retry")

    def _search_state(
        self,
        state: State,
        encoded: EncodedQuery,
        k: int,
        allowed: np.ndarray | None,
        widths_asked: tuple[int | None, int | None, int | None],
        exhaustive: bool,
        lexical: tuple[np.ndarray, np.ndarray, float] | None = None,
        fused: bool = False,
        weight: float | None = None,
    ) -> Hits | None:
        """The cascade on one state; None when its passages were compacted away meanwhile.

        ``lexical``: the lexical index's finds (positions, BM25 scores, milliseconds taken);
        ``fused``: rank by ``fusion.fuse`` with ``weight`` instead of MaxSim alone.
        """
        n_allowed = state.n_live if allowed is None else len(allowed)
        compressed = any(s.codec is not None for s in state.segments)
        n_shortlist, n_prefilter, n_cells = widths_asked
        widths = cascade.plan(
            n_allowed,
            k,
            n_shortlist,
            n_prefilter,
            exhaustive,
            compressed=compressed,
            n_cells=n_cells,
            n_query_tokens=len(encoded.tokens),
            codebook=max((s.codec.k for s in state.segments if s.codec is not None), default=0),
        )
        lex_pos = lexical[0] if lexical is not None else None
        # Fusion ranks every reranked candidate, so the cascade hands them all back.
        positions, scores, stats = cascade.run(
            state, state.shortlist, encoded, n_allowed if fused else k, widths, allowed, lex_pos
        )
        if lexical is not None:
            stats.insert(0, StageStats("lexical", n_allowed, len(lexical[0]), lexical[2]))
        if fused and lexical is not None:
            t0 = time.perf_counter()
            n_in = len(positions)
            positions, scores = fusion.fuse(positions, scores, lexical[0], lexical[1], weight)
            positions, scores = positions[:k], scores[:k]
            stats.append(StageStats("fusion", n_in, len(positions), (time.perf_counter() - t0) * 1e3))
        keys = state.keys[positions].tolist()
        with self._store.reading() as (_, db):
            rows = self._store.rows(db, keys)
        if len(rows) < len(keys):  # a key's row only goes when compaction drops it: search the new state
            return None
        # normalized_score: MaxSim over the query's tokens; a convex fusion is already in [0, 1];
        # RRF over its largest possible value (first in both rankings).
        nq = len(encoded.tokens) if not fused else 1 if weight is not None else 2 / (fusion.RRF_K + 1)
        hits = [
            Hit(
                id=rows[key][0],
                score=float(s),
                text=rows[key][1],
                metadata=rows[key][2],
                normalized_score=float(s) / nq,
            )
            for key, s in zip(keys, scores.tolist())
        ]
        return Hits(hits, stats)

    def search_batch(
        self,
        queries: Sequence[str | EncodedQuery],
        k: int = 10,
        filter: dict[str, Any] | None = None,
        n_threads: int | None = None,
        texts: Sequence[str] | None = None,
        **widths: Any,
    ) -> list[Hits]:
        """``search`` for many queries, spread over ``n_threads`` threads (default: all cores).

        ``texts``: each query's words, for hybrid search over ``EncodedQuery`` objects.
        """
        n_threads = n_threads or os.cpu_count() or 1
        if texts is not None and len(texts) != len(queries):
            raise InvalidInputError(f"texts must give one text a query: {len(texts)} for {len(queries)} queries")
        words = list(texts) if texts is not None else [None] * len(queries)
        with ThreadPoolExecutor(max_workers=n_threads) as pool_:
            return list(pool_.map(lambda q, t: self.search(q, k, filter, text=t, **widths), queries, words))

    def _encode_query(self, query: str | EncodedQuery) -> EncodedQuery:
        if isinstance(query, EncodedQuery):
            tokens = check_tokens(query.tokens, self._store.dim, "query token vectors")
            dense = check_dense(query.dense, 1, self._store.dense_dim, "query dense vector")[0]
            return EncodedQuery(dense=dense, tokens=tokens)
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(f"query must be a non-empty string or an EncodedQuery, but got {query!r}")
        check_unicode(query, "the query")
        encoded = self._encoder.encode_query(query)
        return self._encode_query(encoded)

    def ids(self, filter: dict[str, Any] | None = None) -> list[str]:
        """Ids of the passages in the index (those matching ``filter`` when given), in insertion order.

        >>> import numpy as np
        >>> from colcade import LateIndex, PrecomputedEncoder
        >>> index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=2))
        >>> index.add(ids=["a", "b"], metadatas=[{"n": 1}, {"n": 2}], tokens=[np.ones((1, 2))] * 2)
        ['a', 'b']
        >>> index.ids({"n": {"$gt": 1}})
        ['b']
        """
        where, params = filters.to_sql(filter) if filter is not None else ("1", [])
        with self._store.reading() as (_, db):
            return [r[0] for r in db.execute(f"SELECT id FROM docs WHERE live = 1 AND {where} ORDER BY key", params)]

    def distinct(self, *keys: str, filter: dict[str, Any] | None = None) -> set[tuple[Any, ...]]:
        """The distinct combinations of metadata ``keys`` among passages (matching ``filter``).

        >>> import numpy as np
        >>> from colcade import LateIndex, PrecomputedEncoder
        >>> index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=2))
        >>> _ = index.add(metadatas=[{"source": "a"}, {"source": "a"}, {"source": "b"}], tokens=[np.ones((1, 2))] * 3)
        >>> sorted(index.distinct("source"))
        [('a',), ('b',)]
        """
        if not keys:
            raise InvalidInputError('distinct needs one or more metadata keys, e.g. index.distinct("source")')
        paths = [filters.json_path(k) for k in keys]
        where, params = filters.to_sql(filter) if filter is not None else ("1", [])
        columns = ", ".join("json_extract(metadata, ?)" for _ in keys)
        with self._store.reading() as (_, db):
            return set(db.execute(f"SELECT DISTINCT {columns} FROM docs WHERE live = 1 AND {where}", paths + params))

    def passages(self, batch_size: int = 256, filter: dict[str, Any] | None = None) -> Iterator[Passages]:
        """Every live passage (matching ``filter``) with its stored vectors, ``batch_size`` at a time,
        in insertion order: for copying an index elsewhere (``QdrantIndex.copy_from``).

        All batches come from the state committed when the iteration starts; token vectors are
        as stored (decoded when compressed). A passage deleted and compacted away meanwhile is
        left out. Memory holds one batch.

        >>> import numpy as np
        >>> from colcade import LateIndex, PrecomputedEncoder
        >>> index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=2), storage="float16")
        >>> _ = index.add(["a"], ids=["p"], tokens=[np.array([[1.0, 0.0]])])
        >>> batch = next(index.passages())
        >>> batch.ids, batch.tokens[0].tolist()
        (['p'], [[1.0, 0.0]])
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise InvalidInputError(f"batch_size must be a positive integer, but got {batch_size!r}")
        where = filters.to_sql(filter) if filter is not None else None
        with self._store.reading() as (state, db):
            positions = state.positions_of(self._store.keys_where(db, *where)) if where else np.flatnonzero(state.live)
        for start in range(0, len(positions), batch_size):
            chunk = positions[start : start + batch_size]
            tokens: list[np.ndarray] = [None] * len(chunk)  # type: ignore[list-item]
            dense = np.empty((len(chunk), self._store.dense_dim), np.float32)
            for seg, local, idx in state.locate(chunk):
                for i, j in zip(local, idx):
                    tokens[j] = seg.passage_tokens(int(i))
                dense[idx] = dense_codes.decode(seg.dense[local])
            keys = state.keys[chunk].tolist()
            with self._store.reading() as (_, db):
                rows = self._store.rows(db, keys)
            kept = [j for j, key in enumerate(keys) if key in rows]
            yield Passages(
                ids=[rows[keys[j]][0] for j in kept],
                texts=[rows[keys[j]][1] for j in kept],
                metadatas=[rows[keys[j]][2] for j in kept],
                tokens=[tokens[j] for j in kept],
                dense=dense[kept],
            )

    def get(self, ids: Sequence[str], *, missing_ok: bool = False) -> list[dict[str, Any]]:
        """Stored text and metadata of passages by id (``{"id", "text", "metadata"}``), in the
        order asked. Unknown ids are an error, unless ``missing_ok`` (then they are left out)."""
        ids = id_list(ids, "get")
        with self._store.reading() as (_, db):
            found = self._store.live_keys_for_ids(db, ids)
            missing = [i for i in ids if i not in found]
            if missing and not missing_ok:
                raise UnknownIdError(
                    f"{len(missing)} ids are not in the index ({', '.join(repr(i) for i in missing[:5])})"
                )
            rows = self._store.rows(db, list(found.values()))
        return [{"id": i, "text": rows[found[i]][1], "metadata": rows[found[i]][2]} for i in ids if i in found]

    def stats(self) -> IndexStats:
        """Counts, sizes and the encoder (its ``runtime``: what runs it in this process), for
        monitoring and ``colcade info``."""
        store, state = self._store, self._store.refresh()
        runtime = getattr(self._encoder, "runtime", None)
        return IndexStats(
            documents=state.n_live,
            deleted=int(len(state.live) - state.n_live),
            tokens=int(sum(s.n_tokens for s in state.segments)),
            segments=len(state.segments),
            encoder={**store.encoder_info, **({"runtime": runtime} if runtime else {})},
            bytes_on_disk=store.bytes_on_disk(),
            shortlist=state.shortlist.kind,
            extra={
                "bytes_in_ram": state.shortlist.nbytes() + state.keys.nbytes + state.live.nbytes + state.bases.nbytes,
                "storage": store.storage["kind"],
                "codecs": len({s.codec.name for s in state.segments if s.codec is not None}),
                # compact() would fit a better codec (the index outgrew the one it was coded with)
                "refit_due": store.refit_due(state),
            },
        )
