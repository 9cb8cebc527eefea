"""The Qdrant backend beyond the shared contract (tests/test_backends.py): the collection and the
requests a server gets, errors on collections and servers, copying a LateIndex across, and the
LangChain and LlamaIndex retrievers on top. No server runs here: local mode executes the requests,
and the request objects are checked as a server would receive them (REST JSON and gRPC)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import clustered_corpus, exhaustive_maxsim, query_of, word_encoder

from colcade import (
    BackendUnavailableError,
    EncoderMismatchError,
    FilterError,
    IndexExistsError,
    IndexNotFoundError,
    InvalidInputError,
    LateIndex,
    PrecomputedEncoder,
)

pytest.importorskip("qdrant_client")
from qdrant_client import QdrantClient, models  # noqa: E402
from qdrant_client.conversions.conversion import RestToGrpc  # noqa: E402

from colcade.encoders import describe, pool  # noqa: E402
from colcade.locations import qdrant_parts  # noqa: E402
from colcade.qdrant import QdrantIndex  # noqa: E402
from colcade.qdrant import requests as qrequests  # noqa: E402
from colcade.qdrant.filters import to_qdrant  # noqa: E402


def test_collection_layout_is_the_cascade():
    client = QdrantClient(":memory:")
    QdrantIndex.create(client, "docs", PrecomputedEncoder(dim=24, dense_dim=16))
    config = client.get_collection("docs").config
    dense, tokens = config.params.vectors["dense"], config.params.vectors["tokens"]
    assert (dense.size, dense.distance) == (16, models.Distance.DOT)
    assert (tokens.size, tokens.distance) == (24, models.Distance.DOT)
    assert tokens.multivector_config.comparator == models.MultiVectorComparator.MAX_SIM
    assert tokens.quantization_config.binary.always_ram is True  # sign bits in RAM, originals on disk
    assert tokens.on_disk is True and tokens.datatype == models.Datatype.FLOAT16
    assert tokens.hnsw_config.m == 0  # no graph over token vectors: only prefetched passages are scored
    assert config.metadata["colcade"]["dim"] == 24
    # What a cluster gets (local mode keeps no shards): the same arguments, sharded and replicated.
    args = qrequests.collection(describe(PrecomputedEncoder(dim=24)), shard_number=6, replication_factor=2)
    assert (args["shard_number"], args["replication_factor"]) == (6, 2)
    grpc = RestToGrpc.convert_vector_params(args["vectors_config"]["tokens"])
    assert grpc.multivector_config.comparator == 0 and grpc.quantization_config.binary.always_ram  # MaxSim


def test_the_query_a_server_gets():
    encoded = query_of(np.eye(8, dtype=np.float32)[:3])
    flt = to_qdrant({"source": "a.pdf"})
    request = qrequests.query(encoded, 5, qrequests.Widths.of(5, 400, 60, False), flt)
    prefilter = request.prefetch
    shortlist = prefilter.prefetch
    assert (shortlist.using, shortlist.limit, shortlist.filter) == ("dense", 400, flt)
    assert shortlist.query == encoded.dense.tolist()
    assert (prefilter.using, prefilter.limit, prefilter.filter) == ("tokens", 60, flt)
    assert prefilter.params.quantization == models.QuantizationSearchParams(ignore=False, rescore=False)
    assert (request.using, request.limit, request.filter) == ("tokens", 5, flt)
    assert request.params.quantization.ignore is True  # the rerank reads the float16 originals
    assert request.query == encoded.tokens.tolist()
    # What REST sends and what gRPC sends are the same request.
    body = request.model_dump(exclude_none=True)
    assert (
        body["prefetch"]["prefetch"]["limit"] == 400 and body["prefetch"]["params"]["quantization"]["rescore"] is False
    )
    grpc = RestToGrpc.convert_query_points(request, collection_name="docs")
    assert grpc.prefetch[0].prefetch[0].limit == 400 and grpc.prefetch[0].limit == 60 and grpc.limit == 5
    assert grpc.prefetch[0].params.quantization.ignore is False

    exhaustive = qrequests.query(encoded, 5, qrequests.Widths.of(5, None, None, True), None)
    assert exhaustive.prefetch is None and exhaustive.params.exact is True


def test_stage_widths():
    assert qrequests.Widths.of(10, None, None, False) == qrequests.Widths(2048, 100)
    assert qrequests.Widths.of(100, None, None, False) == qrequests.Widths(6400, 1000)
    assert qrequests.Widths.of(50, 30, 40, False) == qrequests.Widths(30, 30)  # prefilter <= shortlist
    assert qrequests.Widths.of(50, 30, 10, False) == qrequests.Widths(30, 10)  # fewer than k, as a LateIndex


def test_narrow_widths_restrict_the_candidates():
    """A one-passage shortlist leaves one hit: the prefetch chain is what the search runs."""
    tokens, queries = clustered_corpus(80, 16, seed=1)
    index = QdrantIndex.create(":memory:", "docs", PrecomputedEncoder(dim=16))
    index.add(ids=[str(i) for i in range(80)], tokens=tokens)
    q = query_of(queries[0])
    assert len(index.search(q, k=5, n_shortlist=1)) == 1
    dense_best = int(np.argmax(np.stack([pool(t) for t in tokens]) @ q.dense))
    assert index.search(q, k=5, n_shortlist=1)[0].id == str(dense_best)
    assert len(index.search(q, k=5, n_shortlist=3)) == 3
    assert len(index.search(q, k=5, n_shortlist=50, n_prefilter=3)) == 3  # as a LateIndex: the prefilter's width


def test_filters_without_a_qdrant_equivalent_are_refused():
    with pytest.raises(FilterError, match="substring"):
        to_qdrant({"title": {"$text": "late"}})
    with pytest.raises(FilterError, match="orders numbers only"):
        to_qdrant({"date": {"$gt": "2024-01-01"}})
    with pytest.raises(FilterError, match="unknown filter operator"):
        to_qdrant({"$nor": []})
    assert to_qdrant({"a.b": 1}).must[0].key == 'metadata."a.b"'


def test_hybrid_and_lexical_options_say_what_they_need():
    index = QdrantIndex.create(":memory:", "docs", word_encoder(16))
    index.add(["late interaction"], ids=["a"])
    with pytest.raises(InvalidInputError, match="lexical index"):
        index.search("late", hybrid=True)
    with pytest.raises(InvalidInputError, match="lexical index"):
        index.search("late", n_lexical=10)
    with pytest.raises(InvalidInputError, match="n_cells"):
        index.search("late", n_cells=2)
    with pytest.raises(InvalidInputError, match="n_shortlist"):
        index.search("late", n_shortlist=0)
    assert index.search("late", hybrid=False)[0].id == "a"  # hybrid=False and None mean MaxSim alone


def test_collection_errors(tmp_path):
    client = QdrantClient(":memory:")
    with pytest.raises(IndexNotFoundError, match="no Qdrant collection 'docs'"):
        QdrantIndex.open(client, "docs")
    client.create_collection("foreign", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    with pytest.raises(IndexNotFoundError, match="not made by colcade"):
        QdrantIndex.open(client, "foreign")
    QdrantIndex.create(client, "docs", PrecomputedEncoder(dim=8))
    with pytest.raises(IndexExistsError):
        QdrantIndex.create(client, "docs", PrecomputedEncoder(dim=8))
    with pytest.raises(EncoderMismatchError, match="fingerprint"):
        QdrantIndex.open(client, "docs", PrecomputedEncoder(dim=16))
    with pytest.raises(InvalidInputError, match="collection must be"):
        QdrantIndex.create(client, "", PrecomputedEncoder(dim=8))
    with pytest.raises(InvalidInputError, match="indexed_fields"):
        QdrantIndex.create(client, "other", PrecomputedEncoder(dim=8), indexed_fields={"source": "words"})
    assert not client.collection_exists("other")
    assert QdrantIndex.open(client, "docs").encoder.dim == 8  # precomputed: rebuilt from the metadata
    assert QdrantIndex.open_or_create(client, "new", PrecomputedEncoder(dim=8)).collection == "new"
    # A collection whose vectors were changed outside colcade.
    meta = client.get_collection("docs").config.metadata
    client.create_collection(
        "changed", vectors_config={"dense": models.VectorParams(size=3, distance=models.Distance.DOT)}, metadata=meta
    )
    with pytest.raises(EncoderMismatchError, match="changed outside colcade"):
        QdrantIndex.open(client, "changed")
    index = QdrantIndex.open(client, "docs")
    client.delete_collection("docs")
    with pytest.raises(IndexNotFoundError):
        index.search(query_of(np.ones((1, 8), np.float32)))


def test_an_unreachable_server_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match="cannot reach Qdrant http://127.0.0.1:9"):
        QdrantIndex.open(QdrantClient(url="http://127.0.0.1:9", timeout=2), "docs")
    with pytest.raises(BackendUnavailableError, match="cannot reach"):
        QdrantIndex.create("http://127.0.0.1:9", "docs", PrecomputedEncoder(dim=8))


def test_local_folder_reopens_and_is_one_process_at_a_time(tmp_path):
    encoder = word_encoder(16)
    with QdrantIndex.create(str(tmp_path), "docs", encoder) as index:
        index.add(["kept across a restart"], ids=["a"], metadatas=[{"n": 1}])
        with pytest.raises(BackendUnavailableError, match="one process"):
            QdrantIndex.open(str(tmp_path), "docs", encoder)
    with QdrantIndex.open(str(tmp_path), "docs", encoder) as index:
        assert index.get(["a"]) == [{"id": "a", "text": "kept across a restart", "metadata": {"n": 1}}]
        assert index.search("restart", k=1)[0].id == "a"


def test_copy_from_a_late_index_is_exact_and_resumable(tmp_path, monkeypatch):
    tokens, queries = clustered_corpus(150, 16, seed=2)
    encoder = PrecomputedEncoder(dim=16)
    late = LateIndex.create(tmp_path / "late", encoder, storage="float16")
    ids = [f"d{i}" for i in range(150)]
    late.add([f"text {i}" for i in ids], ids=ids, metadatas=[{"i": i} for i in range(150)], tokens=tokens)
    late.delete(["d7"])
    target = QdrantIndex.create(":memory:", "copy", encoder)

    sent, real_send = [], QdrantIndex._send

    def failing_send(self, *args):  # the connection drops after two batches
        if len(sent) == 2:
            raise KeyboardInterrupt
        sent.append(len(args[0]))
        return real_send(self, *args)

    monkeypatch.setattr(QdrantIndex, "_send", failing_send)
    with pytest.raises(KeyboardInterrupt):
        target.copy_from(late, batch_size=40)
    assert len(target) == 80
    monkeypatch.setattr(QdrantIndex, "_send", real_send)
    assert target.copy_from(late, batch_size=40) == 149 - 80  # goes on where it stopped
    assert target.copy_from(late) == 0
    assert sorted(target.ids()) == sorted(late.ids())
    for q in queries[:5]:
        mine = late.search(query_of(q), k=10, exhaustive=True)
        theirs = target.search(query_of(q), k=10)
        assert [h.id for h in theirs] == [h.id for h in mine]
        assert [h.metadata for h in theirs] == [h.metadata for h in mine]
        np.testing.assert_allclose([h.score for h in theirs], [h.score for h in mine], rtol=1e-4)
    with pytest.raises(EncoderMismatchError):
        QdrantIndex.create(":memory:", "other", PrecomputedEncoder(dim=16, name="another")).copy_from(late)


def test_compressed_index_copies_its_decoded_vectors(tmp_path):
    tokens, queries = clustered_corpus(400, 16, seed=4)
    late = LateIndex.create(tmp_path / "late", PrecomputedEncoder(dim=16))  # compressed (the default)
    late.add(ids=[str(i) for i in range(400)], tokens=tokens)
    target = QdrantIndex.create(":memory:", "copy", late.encoder)
    target.copy_from(late)
    decoded = [t for batch in late.passages() for t in batch.tokens]
    q = queries[0]
    exact = exhaustive_maxsim(q, decoded)
    hits = target.search(query_of(q), k=10, exhaustive=True)
    assert [h.id for h in hits] == [str(i) for i in np.argsort(-exact, kind="stable")[:10]]


def test_langchain_and_llamaindex_retrievers_run_on_qdrant():
    pytest.importorskip("langchain_colcade")
    pytest.importorskip("llama_index.retrievers.colcade")
    from llama_index.core.schema import TextNode

    from langchain_colcade import ColcadeRetriever as LangChainRetriever
    from llama_index.retrievers.colcade import ColcadeRetriever as LlamaRetriever

    index = QdrantIndex.create(":memory:", "docs", word_encoder(32))
    lc = LangChainRetriever(index=index, k=2)
    lc.add_documents(
        [
            __import__("langchain_core.documents", fromlist=["Document"]).Document(
                page_content=text, metadata={"source": src}, id=id_
            )
            for id_, text, src in [("a", "late interaction scores tokens", "a.md"), ("b", "BM25 counts words", "b.md")]
        ]
    )
    docs = lc.invoke("late interaction")
    assert [d.id for d in docs][0] == "a" and docs[0].metadata["source"] == "a.md"
    assert [d.id for d in lc.invoke("words", filter={"source": "b.md"})] == ["b"]

    llama = LlamaRetriever(index, similarity_top_k=1)
    llama.insert([TextNode(id_="c", text="qdrant shards collections", metadata={"source": "c.md"})])
    nodes = llama.retrieve("qdrant shards")
    assert nodes[0].node.node_id == "c" and nodes[0].node.metadata["source"] == "c.md"
    assert lc.delete(["a"]) == 1 and "a" not in [d.id for d in lc.invoke("late interaction")]

    from langchain_colcade import ColcadeVectorStore

    store = ColcadeVectorStore(index=index)
    store.add_texts(["replicas keep a shard available"], metadatas=[{"source": "d.md"}], ids=["d"])
    assert store.get_by_ids(["d"])[0].metadata == {"source": "d.md"}
    assert store.similarity_search("shard replicas", k=1)[0].id == "d"
    assert store.max_marginal_relevance_search("shard replicas", k=2, fetch_k=3)[0].id == "d"


def test_locations():
    assert qdrant_parts("qdrant://db.internal:6333/docs") == ("http://db.internal:6333", "docs")
    assert qdrant_parts("qdrant-local:docs") == (".", "docs")
    for bad in ("qdrant://host:6333", "qdrant://host/a/b", "qdrant-local:", "qdrant:///docs"):
        with pytest.raises(InvalidInputError, match="names no collection"):
            qdrant_parts(bad)


def test_command_line_on_qdrant(tmp_path, capsys):
    from colcade.app.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("Qdrant shards a collection across the nodes of a cluster.")
    (docs / "b.md").write_text("Photosynthesis turns sunlight into sugar.")
    folder, dest = str(tmp_path / "idx"), f"qdrant-local:{tmp_path / 'qd'}/docs"

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    assert run("index", str(docs), "--index", folder)[0] == 0
    code, out, _ = run("export-qdrant", folder, dest)
    assert code == 0 and "2 passages sent" in out
    assert "0 passages sent" in run("export-qdrant", folder, dest)[1]  # nothing changed, nothing sent
    code, out, _ = run("search", dest, "how does a cluster split data", "-k", "1", "--json")
    hit = json.loads(out)["hits"][0]
    assert code == 0 and hit["metadata"]["source"].endswith("a.md") and "shards" in hit["text"]
    code, out, _ = run("search", dest, "sunlight", "--filter", f"source={docs / 'b.md'}", "--json")
    assert [h["metadata"]["source"] for h in json.loads(out)["hits"]] == [str(docs / "b.md")]
    code, out, _ = run("info", dest, "--json")
    assert json.loads(out)["documents"] == 2 and json.loads(out)["backend"] == "qdrant"
    (docs / "b.md").unlink()  # the folder changes; the index follows; the export mirrors it
    (docs / "c.md").write_text("Replication keeps every shard on two nodes.")
    run("index", str(docs), "--index", folder)
    assert "1 passages sent" in run("export-qdrant", folder, dest)[1]
    code, out, _ = run("search", dest, "sunlight photosynthesis", "--json")
    assert {h["metadata"]["file"] for h in json.loads(out)["hits"]} == {"a.md", "c.md"}
    code, _, err = run("index", str(docs), "--index", dest)
    assert code == 1 and "export-qdrant" in err
    code, _, err = run("compact", dest)
    assert code == 1 and "nothing to compact" in err
    code, _, err = run("search", dest, "x", "--hybrid")
    assert code == 1 and "lexical index" in err
    code, _, err = run("export-qdrant", folder, str(tmp_path / "plain"))
    assert code == 1 and "Qdrant location" in err


def test_ragatouille_facade_reads_a_qdrant_collection(tmp_path):
    from colcade.compat.ragatouille import RAGPretrainedModel

    rag = RAGPretrainedModel.from_pretrained(index_root=tmp_path)
    rag.index(
        ["The violin has four strings.", "Solar panels make electricity."], document_ids=["v", "s"], index_name="x"
    )
    with QdrantIndex.create(str(tmp_path / "qd"), "docs", rag.encoder) as target:
        target.copy_from(rag.model_index)
    on_qdrant = RAGPretrainedModel.from_index(f"qdrant-local:{tmp_path / 'qd'}/docs")
    assert on_qdrant.search("which instrument has strings", k=1)[0]["document_id"] == "v"
    on_qdrant.delete_from_index(["s"])
    assert len(on_qdrant.model_index) == 1
    on_qdrant.model_index.close()


def test_requests_stay_under_a_servers_size_limit(monkeypatch):
    """A server refuses requests over 32 MiB: writes and batched searches are cut to a budget."""
    import colcade.qdrant.index as qindex

    monkeypatch.setattr(qindex, "REQUEST_BYTES", 500_000)
    index = QdrantIndex.create(":memory:", "docs", PrecomputedEncoder(dim=64))
    sizes: dict[str, list[int]] = {"upsert": [], "query": []}
    upsert, query = index.client.upsert, index.client.query_batch_points

    def spy_upsert(collection, points, **kw):
        sizes["upsert"].append(len(models.PointsList(points=points).model_dump_json()))
        return upsert(collection, points=points, **kw)

    def spy_query(collection, requests, **kw):
        sizes["query"].append(len(models.QueryRequestBatch(searches=requests).model_dump_json()))
        return query(collection, requests=requests, **kw)

    monkeypatch.setattr(index.client, "upsert", spy_upsert)
    monkeypatch.setattr(index.client, "query_batch_points", spy_query)
    tokens, queries = clustered_corpus(40, 64, seed=6)
    index.add(ids=[str(i) for i in range(40)], tokens=tokens, batch_size=40)
    assert len(sizes["upsert"]) > 1 and max(sizes["upsert"]) <= 500_000
    assert len(index) == 40
    batch = index.search_batch([query_of(q) for q in queries], k=3)
    assert len(sizes["query"]) > 1 and max(sizes["query"]) <= 500_000
    assert [h[0].id for h in batch] == [index.search(query_of(q), k=3)[0].id for q in queries]


def test_integers_beyond_float_precision_match_exactly():
    index = QdrantIndex.create(":memory:", "docs", PrecomputedEncoder(dim=4))
    big = 2**53
    index.add(ids=["a", "b", "c"], metadatas=[{"u": big}, {"u": big + 1}, {"u": 2.0}], tokens=[np.ones((1, 4))] * 3)
    assert index.ids({"u": big + 1}) == ["b"]
    assert index.ids({"u": {"$in": [big + 1, 2]}}) == ["b", "c"]  # 2 equals 2.0, as in SQLite
    assert index.ids({"u": {"$ne": big + 1}}) == ["a", "c"]


def test_copy_from_mirrors_a_changed_index(tmp_path):
    encoder = word_encoder(16)
    late = LateIndex.create(tmp_path / "late", encoder)
    late.add(["violins have four strings", "cellos are larger", "violas sit between"], ids=["v", "c", "a"])
    target = QdrantIndex.create(":memory:", "copy", encoder)
    assert target.copy_from(late) == 3
    late.upsert(["violins have four strings tuned in fifths"], ids=["v"])
    late.delete(["c"])
    late.add(["double basses are the largest"], ids=["d"])
    assert target.copy_from(late) == 2  # the changed one and the new one
    assert sorted(target.ids()) == ["a", "c", "d", "v"]  # without remove_missing, "c" stays
    assert target.copy_from(late, remove_missing=True) == 0
    assert sorted(target.ids()) == ["a", "d", "v"]
    assert target.get(["v"])[0]["text"] == "violins have four strings tuned in fifths"


def test_opening_creates_nothing_and_failures_release_the_folder(tmp_path):
    with pytest.raises(IndexNotFoundError, match="not a Qdrant local-mode folder"):
        QdrantIndex.open(str(tmp_path / "none"), "docs")
    assert not (tmp_path / "none").exists()
    folder = str(tmp_path / "qd")
    with pytest.raises(InvalidInputError, match="collection name"):
        QdrantIndex.open_or_create(folder, "a:b", PrecomputedEncoder(dim=4))
    with QdrantIndex.open_or_create(folder, "docs", PrecomputedEncoder(dim=4)) as index:  # not locked
        assert len(index) == 0
