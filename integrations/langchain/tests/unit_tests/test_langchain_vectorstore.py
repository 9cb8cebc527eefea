"""ColcadeVectorStore with the LangChain patterns users start from (the standard suite is in integration_tests)."""

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document  # noqa: E402
from offline import _no_network  # noqa: E402, F401  (autouse: no network in unit tests)

from colcade import InvalidInputError  # noqa: E402
from langchain_colcade import ColcadeVectorStore  # noqa: E402

TEXTS = [
    "The violin has four strings and is played with a bow.",
    "The cello is a larger bowed string instrument.",
    "Solar panels turn sunlight into electricity.",
    "Wind turbines turn moving air into power.",
    "Photosynthesis lets plants turn sunlight into sugar.",
]
META = [{"kind": "music"}, {"kind": "music"}, {"kind": "energy"}, {"kind": "energy"}, {"kind": "biology"}]


@pytest.fixture(scope="module")
def store():
    return ColcadeVectorStore.from_texts(TEXTS, metadatas=META, ids=["violin", "cello", "solar", "wind", "leaf"])


def test_tutorial_shape_from_texts_as_retriever_with_search_kwargs(store):
    retriever = store.as_retriever(search_kwargs={"k": 2, "filter": {"kind": "energy"}})
    assert {d.id for d in retriever.invoke("renewable power")} == {"solar", "wind"}


def test_scores_and_relevance_scores(store):
    (doc, score), *_ = store.similarity_search_with_score("bowed string instrument", k=2, hybrid=False)
    assert doc.id in {"violin", "cello"} and score > 1  # a MaxSim sum
    (doc, fused), *_ = store.similarity_search_with_score("bowed string instrument", k=2)
    assert doc.id in {"violin", "cello"} and 0.0 < fused <= 1.0  # hybrid by default: the fused score
    relevance = store.similarity_search_with_relevance_scores("bowed string instrument", k=5)
    assert all(0.0 <= r <= 1.0 for _, r in relevance)
    assert relevance[0][1] > relevance[-1][1]
    exact = store.similarity_search_with_relevance_scores(TEXTS[2], k=1)[0]
    assert exact[0].id == "solar" and exact[1] > 0.95  # its own text: every token finds itself
    thresholded = store.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.5, "k": 5}
    ).invoke("violin bow strings")
    assert thresholded and all(d.metadata["kind"] == "music" for d in thresholded)


def test_mmr_trades_a_near_duplicate_for_diversity():
    store = ColcadeVectorStore.from_texts(
        [
            "Solar panels turn sunlight into electricity.",
            "Solar panels convert sunlight to electricity.",
            "Wind turbines turn moving air into electricity.",
        ],
        ids=["a", "a2", "wind"],
    )
    plain = [d.id for d in store.similarity_search("solar electricity", k=2)]
    diverse = [d.id for d in store.max_marginal_relevance_search("solar electricity", k=2, fetch_k=3, lambda_mult=0.3)]
    assert set(plain) == {"a", "a2"} and "wind" in diverse
    assert [d.id for d in store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 3}).invoke("solar")]


def test_upsert_delete_get_by_ids():
    store = ColcadeVectorStore()
    ids = store.add_documents([Document(page_content="A harp.", id="harp"), Document(page_content="A drum.")])
    assert ids[0] == "harp" and ids[1]
    store.add_documents([Document(page_content="A harp is plucked.", id="harp", metadata={"v": 2})])
    assert [d.page_content for d in store.get_by_ids(["harp", "nope"])] == ["A harp is plucked."]
    assert store.delete(["harp", "nope"]) is True  # a missing id is skipped
    assert store.get_by_ids(["harp"]) == []


def test_an_embeddings_object_is_refused_with_the_way_out():
    from langchain_core.embeddings import DeterministicFakeEmbedding

    with pytest.raises(InvalidInputError, match="encoder="):
        ColcadeVectorStore.from_texts(["a"], DeterministicFakeEmbedding(size=8))


def test_parent_document_retriever_returns_whole_parents():
    from langchain_classic.retrievers import ParentDocumentRetriever
    from langchain_core.stores import InMemoryStore
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    parents = [
        Document(page_content=" ".join(TEXTS[:2]) + " Orchestras seat strings in front.", id="music-notes"),
        Document(page_content=" ".join(TEXTS[2:4]) + " Grids balance both.", id="energy-notes"),
    ]
    retriever = ParentDocumentRetriever(
        vectorstore=ColcadeVectorStore(),
        docstore=InMemoryStore(),
        child_splitter=RecursiveCharacterTextSplitter(chunk_size=60, chunk_overlap=0),
    )
    retriever.add_documents(parents)
    (doc, *_) = retriever.invoke("moving air")
    assert doc.page_content == parents[1].page_content  # the whole parent, found through a child chunk


def test_multi_vector_retriever_maps_summaries_to_documents():
    from langchain_classic.retrievers.multi_vector import MultiVectorRetriever
    from langchain_core.stores import InMemoryStore

    store, docstore = ColcadeVectorStore(), InMemoryStore()
    retriever = MultiVectorRetriever(vectorstore=store, docstore=docstore, id_key="doc_id")
    full = {"d1": Document(page_content=TEXTS[0] + " " + TEXTS[1]), "d2": Document(page_content=TEXTS[2])}
    docstore.mset(list(full.items()))
    store.add_documents(
        [
            Document(page_content="string instruments", metadata={"doc_id": "d1"}),
            Document(page_content="solar power", metadata={"doc_id": "d2"}),
        ]
    )
    assert retriever.invoke("bowed strings")[0].page_content == full["d1"].page_content


def test_indexing_api_with_a_sql_record_manager(tmp_path):
    from langchain_classic.indexes import SQLRecordManager, index

    store = ColcadeVectorStore(path=tmp_path / "store")
    manager = SQLRecordManager("colcade/test", db_url=f"sqlite:///{tmp_path / 'records.sqlite'}")
    manager.create_schema()
    docs = [Document(page_content=t, metadata={"source": f"{i}.txt"}) for i, t in enumerate(TEXTS[:3])]
    first = index(docs, manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert first["num_added"] == 3
    again = index(docs, manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert again["num_added"] == 0 and again["num_skipped"] == 3
    changed = [Document(page_content="The violin is tuned in fifths.", metadata={"source": "0.txt"}), *docs[1:]]
    third = index(changed, manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert third["num_added"] == 1 and third["num_deleted"] == 1
    assert len(store.index) == 3
    assert store.similarity_search("tuned in fifths", k=1)[0].page_content.startswith("The violin is tuned")


def test_self_query_retriever_turns_the_llms_filter_into_a_colcade_filter(store):
    from langchain_classic.chains.query_constructor.schema import AttributeInfo
    from langchain_classic.retrievers.self_query.base import SelfQueryRetriever
    from langchain_core.language_models import FakeListLLM

    from langchain_colcade import ColcadeTranslator

    # What an LLM answers for "energy passages about sunlight" (the query constructor's JSON).
    llm = FakeListLLM(responses=['```json\n{"query": "sunlight", "filter": "eq(\\"kind\\", \\"energy\\")"}\n```'])
    retriever = SelfQueryRetriever.from_llm(
        llm,
        store,
        "short science and music notes",
        [AttributeInfo(name="kind", description="music, energy or biology", type="string")],
        structured_query_translator=ColcadeTranslator(),
    )
    docs = retriever.invoke("energy passages about sunlight")
    assert docs and {d.metadata["kind"] for d in docs} == {"energy"}  # the leaf (biology) is filtered out
    from langchain_core.structured_query import Comparator, Comparison, Operation, Operator

    nested = Operation(
        operator=Operator.OR,
        arguments=[
            Comparison(comparator=Comparator.CONTAIN, attribute="tags", value="a"),
            Operation(
                operator=Operator.NOT, arguments=[Comparison(comparator=Comparator.LIKE, attribute="t", value="x")]
            ),
        ],
    )
    assert nested.accept(ColcadeTranslator()) == {
        "$or": [{"tags": {"$contains": "a"}}, {"$not": {"t": {"$text": "x"}}}]
    }
