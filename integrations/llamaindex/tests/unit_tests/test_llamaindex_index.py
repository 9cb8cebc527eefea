"""ColcadeIndex: LlamaIndex's Documents-first workflow over colcade."""

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, Settings  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.schema import NodeRelationship  # noqa: E402

from llama_index.retrievers.colcade import ColcadeIndex  # noqa: E402

FILLER = " ".join(f"Section {i} discusses tuning schedules and rehearsal planning at length." for i in range(40))
DOCS = [
    Document(
        text=FILLER + " The answer: a violin has four strings tuned in fifths.",
        id_="strings",
        metadata={"kind": "music"},
    ),
    Document(text="Solar panels turn sunlight into electricity.", id_="solar", metadata={"kind": "energy"}),
    Document(text="A violin-shaped distractor about four winds.", id_="distractor", metadata={"kind": "music"}),
]


@pytest.fixture(autouse=True)
def _mock_llm():
    previous = Settings._llm  # the getter would resolve (and import) a default OpenAI LLM
    Settings.llm = MockLLM(max_tokens=8)
    yield
    Settings._llm = previous


def test_from_documents_splits_long_documents_and_finds_the_answer_inside():
    index = ColcadeIndex.from_documents(DOCS, transformations=[SentenceSplitter(chunk_size=128, chunk_overlap=0)])
    assert len(index.late_index) > len(DOCS)  # the long document became several nodes
    (top, *_) = index.as_retriever(similarity_top_k=2).retrieve("how many strings does a violin have")
    assert "four strings tuned in fifths" in top.node.get_content()
    assert top.node.ref_doc_id == "strings"  # relationships come back from a search
    assert top.node.relationships[NodeRelationship.SOURCE].node_id == "strings"
    assert top.node.metadata == {"kind": "music"}


def test_insert_update_delete_and_refresh_ref_docs():
    index = ColcadeIndex.from_documents(DOCS[1:])
    index.insert(Document(text="Wind turbines turn moving air into power.", id_="wind"))
    assert index.as_retriever(similarity_top_k=1).retrieve("moving air")[0].node.ref_doc_id == "wind"
    index.update_ref_doc(Document(text="Wind farms feed the grid.", id_="wind"))
    assert (
        index.as_retriever(similarity_top_k=1).retrieve("wind farms grid")[0].node.get_content()
        == "Wind farms feed the grid."
    )
    assert set(index.ref_doc_info) == {"solar", "distractor", "wind"}
    index.delete_ref_doc("wind", delete_from_docstore=True)
    assert "wind" not in index.ref_doc_info
    assert all(n.node.ref_doc_id != "wind" for n in index.as_retriever(similarity_top_k=5).retrieve("wind"))
    changed = [DOCS[1], Document(text="A distractor, now about drums.", id_="distractor")]
    assert index.refresh_ref_docs(changed) == [False, True]


def test_filters_query_engine_and_chat_engine_with_a_mock_llm():
    index = ColcadeIndex.from_documents(DOCS)
    from llama_index.core.vector_stores import MetadataFilter, MetadataFilters

    energy = MetadataFilters(filters=[MetadataFilter(key="kind", value="energy")])
    nodes = index.as_retriever(similarity_top_k=3, filters=energy).retrieve("violin")
    assert [n.node.ref_doc_id for n in nodes] == ["solar"]
    response = index.as_query_engine(similarity_top_k=1).query("what turns sunlight into electricity?")
    assert response.source_nodes[0].node.ref_doc_id == "solar" and isinstance(str(response), str)
    chat = index.as_chat_engine(chat_mode="context", similarity_top_k=1)
    assert chat.chat("tell me about solar panels").source_nodes[0].node.ref_doc_id == "solar"


def test_persist_and_load_through_the_colcade_folder(tmp_path):
    index = ColcadeIndex.from_documents(DOCS, path=tmp_path / "idx")
    index.persist()
    loaded = ColcadeIndex.load(tmp_path / "idx")
    assert set(loaded.ref_doc_info) == {"strings", "solar", "distractor"}
    assert loaded.as_retriever(similarity_top_k=1).retrieve("sunlight")[0].node.ref_doc_id == "solar"
    loaded.delete_ref_doc("solar")
    assert all(n.node.ref_doc_id != "solar" for n in loaded.as_retriever(similarity_top_k=3).retrieve("sunlight"))
