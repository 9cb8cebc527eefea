"""langchain_colcade, offline and without network: per-call options, async, ids and metadata, the reranker."""

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")

from langchain_classic.retrievers import ContextualCompressionRetriever  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402
from offline import _no_network  # noqa: E402, F401  (autouse: no network in unit tests)

from colcade import LateIndex  # noqa: E402
from langchain_colcade import ColcadeReranker, ColcadeRetriever  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"
DOCS = [
    Document(
        id="violin",
        page_content="The violin is a bowed string instrument with four strings.",
        metadata={"kind": "music", "year": 1600},
    ),
    Document(
        id="cello",
        page_content="The cello is a larger, lower string instrument than the violin.",
        metadata={"kind": "music", "year": 1650},
    ),
    Document(
        id="solar",
        page_content="Solar panels convert sunlight into electricity.",
        metadata={"kind": "energy", "year": 1954},
    ),
    Document(
        id="wind",
        page_content="Wind turbines turn moving air into electric power.",
        metadata={"kind": "energy", "year": 1887},
    ),
    Document(
        id="leaf", page_content="Leaves use sunlight for photosynthesis.", metadata={"kind": "biology", "year": 1779}
    ),
]


@pytest.fixture
def retriever():
    return ColcadeRetriever.from_documents(DOCS, k=2)


def test_ids_metadata_and_scores_round_trip(retriever):
    docs = retriever.invoke("a bowed instrument")
    assert [d.id for d in docs] == ["violin", "cello"]
    assert docs[0].metadata["kind"] == "music" and docs[0].metadata["year"] == 1600
    assert docs[0].metadata["colcade_score"] >= docs[1].metadata["colcade_score"] > 0


def test_search_kwargs_k_and_filter_the_way_tutorials_pass_them(retriever):
    retriever.search_kwargs = {"k": 1, "filter": {"kind": "energy"}}
    (doc,) = retriever.invoke("sunlight into power")
    assert doc.metadata["kind"] == "energy"
    assert len(retriever.invoke("sunlight into power", k=2)) == 2  # the call wins
    with pytest.raises(Exception, match="k must be a positive integer"):
        retriever.invoke("anything", k=0)


def test_a_users_score_field_is_left_alone_and_scores_can_be_left_out():
    retriever = ColcadeRetriever.from_texts(["a violin", "a solar panel"], metadatas=[{"score": 5}, {"score": 1}])
    doc = retriever.invoke("violin", k=1)[0]
    assert doc.metadata["score"] == 5 and doc.metadata["colcade_score"] > 0
    retriever.score_key = None
    assert retriever.invoke("violin", k=1)[0].metadata == {"score": 5}


def test_add_documents_upserts_and_keeps_the_ids_it_was_given(retriever):
    new = [Document(page_content="A harp has many strings.", id="harp"), Document(page_content="No id here.")]
    ids = retriever.add_documents(new)
    assert ids[0] == "harp" and ids[1]  # the second got one of its own
    retriever.add_documents([Document(page_content="A harp is plucked.", id="harp")])  # same id: replaced
    assert retriever.index.get(["harp"])[0]["text"] == "A harp is plucked."


def test_reranker_ranks_an_empty_document_last_instead_of_failing():
    reranker = ColcadeReranker(top_n=3)
    docs = [Document(page_content=""), Document(page_content="a violin"), Document(page_content="a solar panel")]
    out = reranker.compress_documents(docs, "violin")
    assert [d.page_content for d in out] == ["a violin", "a solar panel", ""]
    assert out[-1].metadata["relevance_score"] == 0.0


def test_k_and_filter_per_call_and_as_fields(retriever):
    assert len(retriever.invoke("electricity", k=4)) == 4
    assert {d.id for d in retriever.invoke("electricity", k=5, filter={"kind": "energy"})} == {"solar", "wind"}
    narrowed = ColcadeRetriever(index=retriever.index, k=1, filter={"year": {"$lt": 1700}})
    assert [d.id for d in narrowed.invoke("sunlight")] in (["violin"], ["cello"])
    assert len(ColcadeRetriever(index=retriever.index, search_kwargs={"exhaustive": True}, k=3).invoke("power")) == 3


async def test_async_matches_sync_and_runs_concurrently(retriever):
    want = [d.id for d in retriever.invoke("sunlight")]
    assert [d.id for d in await retriever.ainvoke("sunlight")] == want
    results = await asyncio.gather(*(retriever.ainvoke(q, k=1) for q in ["violin", "solar", "wind", "leaf"]))
    assert [r[0].id for r in results] == ["violin", "solar", "wind", "leaf"]
    assert [d.id for d in await retriever.ainvoke("electricity", filter={"kind": "energy"}, k=5)] in (
        ["solar", "wind"],
        ["wind", "solar"],
    )


def test_batch(retriever):
    batched = retriever.batch(["violin", "solar panels"])
    assert [b[0].id for b in batched] == ["violin", "solar"]


def test_add_and_delete_pass_through(retriever):
    retriever.add_documents(
        [Document(id="harp", page_content="The harp has many strings plucked by hand.", metadata={"kind": "music"})]
    )
    assert retriever.invoke("plucked strings", k=1)[0].id == "harp"
    assert retriever.delete(["harp"]) == 1
    assert "harp" not in {d.id for d in retriever.invoke("plucked strings", k=5)}


def test_from_index_path(tmp_path):
    index = LateIndex.create(tmp_path / "idx")
    index.add([d.page_content for d in DOCS], ids=[d.id for d in DOCS])
    index.close()
    assert ColcadeRetriever.from_index(tmp_path / "idx", k=1).invoke("wind power")[0].id == "wind"


def test_reranker_inside_contextual_compression():
    # A different first-stage retriever (vector store on fake embeddings: an arbitrary order).
    base = InMemoryVectorStore.from_documents(DOCS, DeterministicFakeEmbedding(size=32)).as_retriever(
        search_kwargs={"k": 5}
    )
    compressed = ContextualCompressionRetriever(base_compressor=ColcadeReranker(top_n=2), base_retriever=base)
    docs = compressed.invoke("which instrument is larger than the violin")
    assert [d.id for d in docs][0] == "cello" and len(docs) == 2
    assert docs[0].metadata["relevance_score"] >= docs[1].metadata["relevance_score"]
    assert docs[0].metadata["kind"] == "music"  # the original metadata is kept


async def test_reranker_async_and_empty():
    reranker = ColcadeReranker(top_n=1)
    assert await reranker.acompress_documents([], "anything") == []
    top = await reranker.acompress_documents(DOCS, "photosynthesis")
    assert [d.id for d in top] == ["leaf"]


def test_normalized_scores_do_not_grow_with_the_query():
    retriever = ColcadeRetriever.from_texts(
        ["The violin has four strings.", "Solar panels make power."], search_kwargs={"hybrid": False}
    )  # MaxSim scores: a hybrid search's fused score is already in [0, 1]
    retriever.normalize_scores = True
    short = retriever.invoke("violin", k=1)[0].metadata["colcade_score"]
    long = retriever.invoke("which instrument has four strings and a bow", k=1)[0].metadata["colcade_score"]
    assert 0 < short <= 1.0 and 0 < long <= 1.0
    retriever.normalize_scores = False
    assert retriever.invoke("which instrument has four strings and a bow", k=1)[0].metadata["colcade_score"] > 2


def test_multi_query_retriever_merges_one_passage_found_by_several_sub_queries(retriever):
    from langchain_classic.retrievers.multi_query import MultiQueryRetriever
    from langchain_core.language_models import FakeListLLM

    retriever.score_key = None  # as documented: the score differs between sub-queries
    llm = FakeListLLM(responses=["a bowed instrument\na string instrument\nthe violin"])
    docs = MultiQueryRetriever.from_llm(retriever=retriever, llm=llm).invoke("violin")
    ids = [d.id for d in docs]
    assert len(ids) == len(set(ids)) and "violin" in ids


def test_hybrid_search_through_search_kwargs():
    docs = [
        Document(page_content="The zymurgy of lambic beer relies on wild yeast.", id="beer"),
        Document(page_content="Glaciers are slow rivers of ice.", id="ice"),
        Document(page_content="The violin has four strings.", id="violin"),
    ]
    retriever = ColcadeRetriever.from_documents(docs, k=2, search_kwargs={"hybrid": True})
    found = retriever.invoke("zymurgy")
    assert found[0].id == "beer" and 0.0 <= found[0].metadata["colcade_score"] <= 1.0
