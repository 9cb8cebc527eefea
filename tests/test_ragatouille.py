"""Migrating from RAGatouille: the facade's calls and result formats."""

import pytest
from test_colbert import checkpoint  # noqa: F401  (a real ColBERT checkpoint folder)

from colcade import IndexExistsError, UnknownIdError
from colcade.compat.ragatouille import RAGPretrainedModel

DOCS = [
    "The violin is a string instrument played with a bow. It has four strings tuned in fifths.",
    "Solar panels convert sunlight into electricity using photovoltaic cells.",
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
]


@pytest.fixture
def rag(tmp_path):
    rag = RAGPretrainedModel.from_pretrained(index_root=tmp_path / ".ragatouille")  # offline default encoder
    path = rag.index(
        DOCS,
        document_ids=["violin", "solar", "plants"],
        document_metadatas=[{"k": 1}, {"k": 2}, {"k": 3}],
        index_name="demo",
    )
    assert path.endswith(".ragatouille/colbert/indexes/demo")
    return rag


def test_search_results_look_like_ragatouille(rag):
    results = rag.search("which instrument has four strings", k=2)
    assert [r["rank"] for r in results] == [1, 2]
    top = results[0]
    assert top["document_id"] == "violin" and top["document_metadata"] == {"k": 1}
    assert set(top) == {"content", "score", "rank", "document_id", "passage_id", "document_metadata"}
    assert "four strings" in top["content"]
    batch = rag.search(["violin", "solar power"], k=1, zero_index_ranks=True)
    assert [r[0]["document_id"] for r in batch] == ["violin", "solar"] and batch[0][0]["rank"] == 0


def test_long_documents_are_split_into_passages(tmp_path):
    rag = RAGPretrainedModel.from_pretrained(index_root=tmp_path)
    long_doc = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(120))
    rag.index([long_doc], document_ids=["long"], index_name="long", max_document_length=64)
    passages = rag.model_index.ids()
    assert len(passages) > 5 and all(p.startswith("long#") for p in passages)
    assert rag.search("topic 3", k=3)[0]["document_id"] == "long"


def test_add_delete_and_doc_ids_filter(rag):
    rag.add_to_index(["A cello is larger than a violin."], new_document_ids=["cello"])
    assert {r["document_id"] for r in rag.search("violin", k=5)} >= {"violin", "cello"}
    assert {r["document_id"] for r in rag.search("violin", k=5, doc_ids=["cello", "solar"])} <= {"cello", "solar"}
    rag.delete_from_index(["violin"])
    assert "violin" not in {r["document_id"] for r in rag.search("violin", k=5)}
    with pytest.raises(UnknownIdError, match="'nope'"):
        rag.delete_from_index(["nope"])


def test_from_index_reopens_with_its_encoder(rag):
    reopened = RAGPretrainedModel.from_index(rag.model_index.path)
    assert reopened.search("photosynthesis", k=1)[0]["document_id"] == "plants"


def test_overwrite_rules(rag):
    with pytest.raises(IndexExistsError, match="overwrite_index"):
        rag.index(DOCS[:1], index_name="demo", overwrite_index=False)
    rag.index(DOCS[:1], document_ids=["only"], index_name="demo")
    assert [r["document_id"] for r in rag.search("violin", k=3)] == ["only"]


def test_rerank_in_memory(rag):
    results = rag.rerank("solar electricity", DOCS, k=2)
    assert results[0]["result_index"] == 1 and results[0]["rank"] == 1 and len(results) == 2
    assert results[0]["score"] >= results[1]["score"]


def test_from_pretrained_with_a_colbert_checkpoint(tmp_path, checkpoint):  # noqa: F811
    rag = RAGPretrainedModel.from_pretrained(checkpoint, index_root=tmp_path)
    rag.index(DOCS, document_ids=["violin", "solar", "plants"], index_name="cb")
    assert rag.encoder.kind == "colbert"
    assert len(rag.search("violin", k=3)) == 3
