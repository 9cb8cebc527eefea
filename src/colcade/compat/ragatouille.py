"""Migrating from RAGatouille: the same ``RAGPretrainedModel`` calls, on colcade.

Change the import and keep your code::

    # from ragatouille import RAGPretrainedModel
    from colcade.compat.ragatouille import RAGPretrainedModel

    RAG = RAGPretrainedModel.from_pretrained("colbert-ir/colbertv2.0")
    RAG.index(collection=docs, document_ids=ids, document_metadatas=metas, index_name="my_index")
    RAG.search("a question", k=5)

Indexes live under ``.ragatouille/colbert/indexes/<index_name>`` as RAGatouille's do, but are
colcade indexes: updates are immediate, deletes are real, filters work, nothing needs a GPU.
Documents are split into passages of ``max_document_length`` tokens; results carry the
document id, the passage id and the document's metadata, as RAGatouille's do.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from colcade.app.chunking import split_passages
from colcade.encoders import Encoder, default_encoder
from colcade.errors import IndexExistsError, InvalidInputError, UnknownIdError
from colcade.index import LateIndex
from colcade.locations import is_qdrant, open_index
from colcade.rerank import rerank
from colcade.storage.store import MANIFEST

Result = dict[str, Any]


class RAGPretrainedModel:
    """RAGatouille's front class over a colcade ``LateIndex``."""

    def __init__(self, encoder: Encoder, index_root: str | Path | None = None) -> None:
        self.encoder = encoder
        self.index_root = Path(index_root or ".ragatouille")
        self.model_index: Any = None  # a LateIndex, or a QdrantIndex from from_index

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path | None = None,
        n_gpu: int = -1,
        verbose: int = 1,
        index_root: str | None = None,
    ) -> RAGPretrainedModel:
        """A ColBERT checkpoint (local folder or hub name); ``None`` for colcade's offline default encoder.

        ``n_gpu`` and ``verbose`` are accepted for compatibility; colcade runs on the CPU.
        """
        if pretrained_model_name_or_path is None:
            return cls(default_encoder(), index_root)
        from colcade.encoders.colbert import ColBERTEncoder

        return cls(ColBERTEncoder(pretrained_model_name_or_path), index_root)

    @classmethod
    def from_index(cls, index_path: str | Path, n_gpu: int = -1, verbose: int = 1) -> RAGPretrainedModel:
        """Open an index built by this class (or any colcade index, or a Qdrant collection:
        ``qdrant://HOST:PORT/NAME``) with the encoder that built it."""
        index = open_index(index_path)
        root = None if is_qdrant(index_path) else Path(index_path).parent.parent.parent
        instance = cls(index.encoder, root)
        instance.model_index = index
        return instance

    # ------------------------------------------------------------------ indexing
    def index(
        self,
        collection: Sequence[str],
        document_ids: Sequence[str] | None = None,
        document_metadatas: Sequence[dict[str, Any]] | None = None,
        index_name: str | None = None,
        overwrite_index: bool = True,
        max_document_length: int = 256,
        split_documents: bool = True,
        document_splitter_fn: Callable[[str], list[str]] | None = None,
        preprocessing_fn: Callable[[str], str] | None = None,
        bsize: int = 32,
        use_faiss: bool = False,
    ) -> str:
        """Build an index of ``collection``; returns its path."""
        path = self.index_root / "colbert" / "indexes" / (index_name or f"colcade_{uuid.uuid4().hex[:8]}")
        if path.exists():
            if not overwrite_index:
                raise IndexExistsError(f"index {path} exists: pass overwrite_index=True, or use add_to_index")
            if not (path / MANIFEST).is_file():
                raise IndexExistsError(f"{path} exists and is not a colcade index; not overwriting it")
            if self.model_index is not None and self.model_index.path == path:
                self.model_index.close()
            shutil.rmtree(path)
        self.model_index = LateIndex.create(path, encoder=self.encoder)
        self._add(
            collection,
            document_ids,
            document_metadatas,
            max_document_length,
            split_documents,
            document_splitter_fn,
            preprocessing_fn,
            bsize,
        )
        return str(path)

    def add_to_index(
        self,
        new_collection: Sequence[str],
        new_document_ids: Sequence[str] | None = None,
        new_document_metadatas: Sequence[dict[str, Any]] | None = None,
        index_name: str | None = None,
        split_documents: bool = True,
        document_splitter_fn: Callable[[str], list[str]] | None = None,
        preprocessing_fn: Callable[[str], str] | None = None,
        bsize: int = 32,
        use_faiss: bool = False,
    ) -> None:
        """Add documents to the index (visible to the next search)."""
        self._open(index_name)
        self._add(
            new_collection,
            new_document_ids,
            new_document_metadatas,
            256,
            split_documents,
            document_splitter_fn,
            preprocessing_fn,
            bsize,
        )

    def delete_from_index(self, document_ids: Sequence[str], index_name: str | None = None) -> None:
        """Delete documents (all their passages) by document id."""
        index = self._open(index_name)
        document_ids = [document_ids] if isinstance(document_ids, str) else list(document_ids)
        passages = index.ids({"document_id": {"$in": document_ids}}) if document_ids else []
        found = {p.rsplit("#", 1)[0] for p in passages}
        missing = [d for d in document_ids if d not in found]
        if missing:
            raise UnknownIdError(
                f"{len(missing)} document ids are not in the index ({', '.join(map(repr, missing[:5]))}); "
                "nothing was deleted"
            )
        index.delete(passages)

    def _add(self, collection, document_ids, metadatas, max_length, split, splitter, preprocess, bsize) -> None:
        if isinstance(collection, str):
            raise InvalidInputError("collection must be a list of documents, not one string: wrap it as [text]")
        document_ids = (
            [str(uuid.uuid4()) for _ in collection] if document_ids is None else [str(d) for d in document_ids]
        )
        if len(document_ids) != len(collection) or len(set(document_ids)) != len(document_ids):
            raise InvalidInputError("document_ids must be unique and as many as the documents")
        metadatas = list(metadatas) if metadatas is not None else [{} for _ in collection]
        if len(metadatas) != len(collection):
            raise InvalidInputError("document_metadatas must be as many as the documents")
        count = getattr(self.encoder, "count_tokens", None)
        texts, ids, metas = [], [], []
        for doc_id, text, meta in zip(document_ids, collection, metadatas):
            if not split:
                pieces = [text]
            elif splitter is not None:
                pieces = list(splitter(text))
            else:
                pieces = [p.text for p in split_passages(text, max_tokens=max_length, count_tokens=count)]
            for i, piece in enumerate(pieces):
                texts.append(preprocess(piece) if preprocess else piece)
                ids.append(f"{doc_id}#{i}")
                metas.append({**meta, "document_id": doc_id, "passage_id": i})
        self.model_index.add(texts, ids=ids, metadatas=metas, batch_size=bsize)

    def _open(self, index_name: str | None) -> Any:
        if index_name is not None:
            path = self.index_root / "colbert" / "indexes" / index_name
            if self.model_index is None or self.model_index.path != path:
                self.model_index = LateIndex.open(path, encoder=self.encoder)
        if self.model_index is None:
            raise InvalidInputError("no index yet: call index(...) first, or RAGPretrainedModel.from_index(path)")
        return self.model_index

    # ------------------------------------------------------------------ querying
    def search(
        self,
        query: str | Sequence[str],
        index_name: str | None = None,
        k: int = 10,
        force_fast: bool = False,
        zero_index_ranks: bool = False,
        doc_ids: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[Result] | list[list[Result]]:
        """Top-``k`` passages: ``{"content", "score", "rank", "document_id", "passage_id", "document_metadata"}``.

        A list of queries gives a list of result lists. ``doc_ids`` restricts the search to
        those documents; ``force_fast`` uses narrower cascade stages.
        """
        index = self._open(index_name)
        widths = {"n_shortlist": 512, "n_prefilter": max(32, 4 * k)} if force_fast else {}
        flt = {"document_id": {"$in": list(doc_ids)}} if doc_ids else None
        queries = [query] if isinstance(query, str) else list(query)
        out = []
        for q in queries:
            results = []
            for rank, hit in enumerate(index.search(q, k=k, filter=flt, **widths), start=0 if zero_index_ranks else 1):
                meta = {key: v for key, v in hit.metadata.items() if key not in ("document_id", "passage_id")}
                result = {
                    "content": hit.text,
                    "score": hit.score,
                    "rank": rank,
                    "document_id": hit.metadata.get("document_id", hit.id),
                    "passage_id": hit.metadata.get("passage_id", 0),
                }
                if meta:
                    result["document_metadata"] = meta
                results.append(result)
            out.append(results)
        return out[0] if isinstance(query, str) else out

    def rerank(
        self,
        query: str | Sequence[str],
        documents: Sequence[str],
        k: int = 10,
        zero_index_ranks: bool = False,
        bsize: Any = "auto",
    ) -> list[Result] | list[list[Result]]:
        """Rerank ``documents`` in memory: ``{"content", "score", "rank", "result_index"}``, best first."""
        queries = [query] if isinstance(query, str) else list(query)
        out = []
        for q in queries:
            ranked = rerank(self.encoder, q, documents, k=min(k, len(documents)) if documents else None)
            first = 0 if zero_index_ranks else 1
            out.append(
                [
                    {"content": documents[i], "score": s, "rank": r + first, "result_index": i}
                    for r, (i, s) in enumerate(ranked)
                ]
            )
        return out[0] if isinstance(query, str) else out

    def as_langchain_retriever(self, **kwargs: Any):
        """A LangChain retriever over this index (``pip install "colcade[langchain]"``)."""
        from langchain_colcade import ColcadeRetriever

        return ColcadeRetriever(index=self._open(None), **kwargs)

    def as_langchain_document_compressor(self, k: int = 5, **kwargs: Any):
        """A LangChain document compressor that MaxSim-reranks with this model."""
        from langchain_colcade import ColcadeReranker

        return ColcadeReranker(encoder=self.encoder, top_n=k, **kwargs)
