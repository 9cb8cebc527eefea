"""llama_index.retrievers.colcade: nodes, filters, async, the reranker."""

from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402
from llama_index.core.vector_stores import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters  # noqa: E402

from llama_index.postprocessor.colcade_rerank import ColcadeRerank  # noqa: E402
from llama_index.retrievers.colcade import ColcadeRetriever  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"
DOCS = [
    Document(
        text="The violin is a bowed string instrument with four strings.",
        metadata={"kind": "music", "year": 1600},
        id_="violin",
    ),
    Document(
        text="Solar panels convert sunlight into electricity.", metadata={"kind": "energy", "year": 1954}, id_="solar"
    ),
    Document(
        text="Wind turbines turn moving air into electric power.", metadata={"kind": "energy", "year": 1887}, id_="wind"
    ),
    Document(text="Leaves use sunlight for photosynthesis.", metadata={"kind": "biology", "year": 1779}, id_="leaf"),
]


@pytest.fixture(scope="module")
def retriever():
    return ColcadeRetriever.from_documents(DOCS, similarity_top_k=2)


def test_nodes_carry_ids_metadata_and_scores(retriever):
    nodes = retriever.retrieve("electricity from the sun")
    assert isinstance(nodes[0], NodeWithScore) and isinstance(nodes[0].node, TextNode)
    assert nodes[0].node.node_id == "solar" and nodes[0].node.metadata == {"kind": "energy", "year": 1954}
    assert nodes[0].score >= nodes[1].score > 0 and len(nodes) == 2


def _ids(retriever, query, filters):
    r = ColcadeRetriever(retriever.index, similarity_top_k=4, filters=filters)
    return {n.node.node_id for n in r.retrieve(query)}


def test_metadata_filters(retriever):
    energy = MetadataFilters(filters=[MetadataFilter(key="kind", value="energy")])
    assert _ids(retriever, "sunlight", energy) == {"solar", "wind"}
    either = MetadataFilters(
        filters=[
            MetadataFilter(key="year", value=1700, operator=FilterOperator.LT),
            MetadataFilter(key="kind", value="biology"),
        ],
        condition=FilterCondition.OR,
    )
    assert _ids(retriever, "sunlight", either) == {"violin", "leaf"}
    nested = MetadataFilters(
        filters=[
            MetadataFilter(key="kind", value=["energy", "biology"], operator=FilterOperator.IN),
            MetadataFilters(filters=[MetadataFilter(key="year", value=1900, operator=FilterOperator.GT)]),
        ]
    )
    assert _ids(retriever, "power", nested) == {"solar"}
    assert _ids(retriever, "power", {"kind": "music"}) == {"violin"}  # a colcade filter works too


def test_every_filter_operator_maps_to_colcade():
    docs = [
        Document(text="A violin.", id_="violin", metadata={"tags": ["strings", "bowed"], "kind": "Music"}),
        Document(text="A harp.", id_="harp", metadata={"tags": ["strings"], "kind": "music"}),
        Document(text="A drum.", id_="drum", metadata={"tags": [], "kind": "percussion"}),
    ]
    retriever = ColcadeRetriever.from_documents(docs, similarity_top_k=3)

    def found(op, value, key="tags"):
        filters = MetadataFilters(filters=[MetadataFilter(key=key, value=value, operator=op)])
        filtered = ColcadeRetriever(retriever.index, similarity_top_k=3, filters=filters)
        return {n.node.node_id for n in filtered.retrieve("instrument")}

    assert found(FilterOperator.CONTAINS, "bowed") == {"violin"}
    assert found(FilterOperator.ANY, ["bowed", "strings"]) == {"violin", "harp"}
    assert found(FilterOperator.ALL, ["bowed", "strings"]) == {"violin"}
    assert found(FilterOperator.TEXT_MATCH, "usic", key="kind") == {"violin", "harp"}
    assert found(FilterOperator.IS_EMPTY, None) == {"drum"}
    if hasattr(FilterOperator, "TEXT_MATCH_INSENSITIVE"):
        assert found(FilterOperator.TEXT_MATCH_INSENSITIVE, "MUSIC", key="kind") == {"violin", "harp"}


async def test_aretrieve_matches_retrieve(retriever):
    want = [n.node.node_id for n in retriever.retrieve("wind")]
    assert [n.node.node_id for n in await retriever.aretrieve("wind")] == want


def test_insert_and_delete():
    r = ColcadeRetriever.from_documents(DOCS, similarity_top_k=1)
    r.insert([TextNode(id_="harp", text="The harp has many plucked strings.")])
    assert r.retrieve("plucked strings")[0].node.node_id == "harp"
    r.delete(["harp"])
    assert r.retrieve("plucked strings")[0].node.node_id != "harp"


def test_rerank_postprocessor():
    nodes = [NodeWithScore(node=TextNode(id_=d.doc_id, text=d.text), score=0.0) for d in DOCS]
    out = ColcadeRerank(top_n=2).postprocess_nodes(nodes, query_bundle=QueryBundle("photosynthesis in leaves"))
    assert out[0].node.node_id == "leaf" and len(out) == 2 and out[0].score >= out[1].score


def test_normalized_scores_threshold_the_same_for_short_and_long_queries():
    from llama_index.core.postprocessor import SimilarityPostprocessor

    texts = ["The violin has four strings.", "Solar panels make electricity.", "Glaciers are rivers of ice."]
    # MaxSim scores (hybrid=False): a hybrid search's fused score is relative to the query's candidates.
    raw = ColcadeRetriever.from_texts(texts, similarity_top_k=3, search_kwargs={"hybrid": False})
    normalized = ColcadeRetriever(raw.index, similarity_top_k=3, normalize_scores=True, search_kwargs={"hybrid": False})
    short, long = "violin", "which instrument has four strings and is played with a bow under the chin"
    for query in (short, long):
        nodes = normalized.retrieve(query)
        assert all(-1.0 <= n.score <= 1.0 for n in nodes)
        assert nodes[0].node.text.startswith("The violin")
    # The raw MaxSim sum grows with the query's length; the normalized score does not.
    assert raw.retrieve(long)[0].score > 3 * raw.retrieve(short)[0].score
    cutoff = SimilarityPostprocessor(similarity_cutoff=0.5)
    for query in (short, long):  # one cutoff keeps just the answer, whatever the query's length
        kept = cutoff.postprocess_nodes(normalized.retrieve(query))
        assert [n.node.text for n in kept] == ["The violin has four strings."]
    assert len(cutoff.postprocess_nodes(raw.retrieve(long))) == 3  # raw sums let every distractor through


def test_insert_replaces_a_node_and_keeps_its_source_document():
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo

    retriever = ColcadeRetriever.from_texts(["Solar panels make electricity."], ids=["solar"], similarity_top_k=1)
    node = TextNode(id_="n1", text="The violin has four strings.", metadata={"kind": "music"})
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="handbook")
    retriever.insert([node])
    retriever.insert(
        [TextNode(id_="n1", text="The violin has four strings tuned in fifths.", relationships=node.relationships)]
    )
    (hit,) = retriever.retrieve("violin strings")
    assert hit.node.node_id == "n1" and hit.node.get_content().endswith("fifths.")
    assert hit.node.ref_doc_id == "handbook"


def test_hybrid_search_through_search_kwargs():
    texts = ["The zymurgy of lambic beer relies on wild yeast.", "Glaciers are slow rivers of ice.", "The violin."]
    retriever = ColcadeRetriever.from_texts(
        texts, ids=["beer", "ice", "violin"], similarity_top_k=2, search_kwargs={"hybrid": "rrf"}
    )
    found = retriever.retrieve("zymurgy")
    assert found[0].node.id_ == "beer" and 0.0 < found[0].score <= 2 / 61
