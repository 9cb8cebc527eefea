"""ColcadeIndex: a LlamaIndex index (``from_documents``, ``insert``, ``delete_ref_doc``...) over colcade.

Like LlamaIndex's own ``ColbertIndex``, a ``BaseIndex``: Documents go through the node parser
(``Settings.transformations``, a ``SentenceSplitter`` by default, or ``transformations=``), the
nodes into a colcade ``LateIndex`` (their id, text, metadata, and the node itself, so ``ref_doc_id``
and relationships come back from a search). The storage context's docstore tracks which nodes
belong to which document (``delete_ref_doc``, ``update_ref_doc``, ``refresh_ref_docs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.data_structs.data_structs import IndexDict
from llama_index.core.indices.base import BaseIndex
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.storage.docstore.types import RefDocInfo
from llama_index.core.storage.storage_context import StorageContext
from llama_index.core.vector_stores.utils import node_to_metadata_dict

from colcade import LateIndex
from colcade.encoders import Encoder
from llama_index.retrievers.colcade.base import ColcadeRetriever

LLAMAINDEX_STATE = "llamaindex"  # the docstore and index store, inside the colcade folder


class ColcadeIndex(BaseIndex[IndexDict]):
    """A LlamaIndex index whose retrieval is colcade's late-interaction cascade.

    Example:
        .. code-block:: python

            from llama_index.core import Document
            from llama_index.retrievers.colcade import ColcadeIndex

            index = ColcadeIndex.from_documents([Document(text="...")], path="my_index")
            index.as_query_engine().query("a question")
            index.persist()                       # later: ColcadeIndex.load("my_index")
    """

    index_struct_cls = IndexDict

    def __init__(
        self,
        nodes: Sequence[BaseNode] | None = None,
        index_struct: IndexDict | None = None,
        storage_context: StorageContext | None = None,
        *,
        late_index: LateIndex | None = None,
        path: str | Path | None = None,
        encoder: Encoder | None = None,
        **kwargs: Any,
    ) -> None:
        """Over ``late_index``, or the index folder at ``path`` (opened or created), or in memory."""
        if late_index is None:
            late_index = LateIndex.open_or_create(path, encoder) if path is not None else LateIndex.in_memory(encoder)
        self.late_index = late_index
        if nodes is None and index_struct is None:
            nodes = []
        super().__init__(nodes=nodes, index_struct=index_struct, storage_context=storage_context, **kwargs)

    # ------------------------------------------------------------------ BaseIndex
    def _build_index_from_nodes(self, nodes: Sequence[BaseNode], **build_kwargs: Any) -> IndexDict:
        struct = IndexDict()
        self._add(nodes, struct)
        return struct

    def _insert(self, nodes: Sequence[BaseNode], **insert_kwargs: Any) -> None:
        self._add(nodes, self._index_struct)

    def _add(self, nodes: Sequence[BaseNode], struct: IndexDict) -> None:
        # A node without text has no tokens to score: it is kept by the docstore, not indexed.
        nodes = [n for n in nodes if n.get_content(metadata_mode=MetadataMode.NONE).strip()]
        if not nodes:
            return
        self.late_index.upsert(
            [n.get_content(metadata_mode=MetadataMode.NONE) for n in nodes],
            ids=[n.node_id for n in nodes],
            metadatas=[node_to_metadata_dict(n, remove_text=True, flat_metadata=False) for n in nodes],
        )
        for n in nodes:
            struct.add_node(n, text_id=n.node_id)

    def _delete_node(self, node_id: str, **delete_kwargs: Any) -> None:
        self.late_index.delete([node_id], missing_ok=True)
        self._index_struct.delete(node_id)

    def delete_ref_doc(self, ref_doc_id: str, delete_from_docstore: bool = False, **delete_kwargs: Any) -> None:
        """Delete a document's nodes, in one colcade commit."""
        info = self.docstore.get_ref_doc_info(ref_doc_id)
        node_ids = list(info.node_ids) if info is not None else []
        self.late_index.delete(node_ids, missing_ok=True)
        for node_id in node_ids:
            self._index_struct.delete(node_id)
            if delete_from_docstore:
                self.docstore.delete_document(node_id, raise_error=False)
        if delete_from_docstore:
            self.docstore.delete_ref_doc(ref_doc_id, raise_error=False)
        self._storage_context.index_store.add_index_struct(self._index_struct)

    @property
    def ref_doc_info(self) -> dict[str, RefDocInfo]:
        return self.docstore.get_all_ref_doc_info() or {}

    def as_retriever(self, **kwargs: Any) -> ColcadeRetriever:
        """A ``ColcadeRetriever`` (``similarity_top_k``, ``filters``, ``normalize_scores``...)."""
        return ColcadeRetriever(self.late_index, callback_manager=self._callback_manager, **kwargs)

    # ------------------------------------------------------------------ persistence
    def persist(self, persist_dir: str | Path | None = None) -> None:
        """Save the docstore and index store (the vectors are already on disk, in the colcade folder)."""
        if persist_dir is None:
            if self.late_index.path is None:
                raise ValueError("an in-memory ColcadeIndex needs a persist_dir")
            persist_dir = self.late_index.path / LLAMAINDEX_STATE
        self.storage_context.persist(persist_dir=str(persist_dir))

    @classmethod
    def load(cls, path: str | Path, encoder: Encoder | None = None, **kwargs: Any) -> ColcadeIndex:
        """Reopen an index saved with ``persist()``."""
        late = LateIndex.open(path, encoder=encoder)
        storage = StorageContext.from_defaults(persist_dir=str(Path(path) / LLAMAINDEX_STATE))
        (struct,) = storage.index_store.index_structs()
        return cls(index_struct=struct, storage_context=storage, late_index=late, **kwargs)
