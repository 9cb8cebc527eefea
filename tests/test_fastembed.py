"""The fastembed adapter, on a local model folder (fastembed's specific_model_path), offline.

The folder holds the ColBERT checkpoint of test_colbert.py exported to ONNX, so fastembed's
ColBERT pipeline and colcade's own ColBERTEncoder can be held to each other.
"""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("fastembed")

from test_colbert import checkpoint  # noqa: E402,F401  (the fixture)

from colcade import EncoderUnavailableError, LateIndex  # noqa: E402
from colcade.encoders.colbert import ColBERTEncoder  # noqa: E402
from colcade.encoders.fastembed import FastEmbedEncoder  # noqa: E402
from colcade.encoders.onnx_bert import build_bert, read_safetensors  # noqa: E402


@pytest.fixture(scope="module")
def fastembed_folder(checkpoint, tmp_path_factory):  # noqa: F811
    weights = read_safetensors(checkpoint / "model.safetensors")
    config = json.loads((checkpoint / "config.json").read_text())
    folder = tmp_path_factory.mktemp("fastembed-colbert")
    (folder / "model.onnx").write_bytes(build_bert(weights, config, weights["linear.weight"]))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        shutil.copy(checkpoint / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def encoder(fastembed_folder):
    return FastEmbedEncoder("colbert-ir/colbertv2.0", specific_model_path=str(fastembed_folder))


def test_fastembed_agrees_with_the_native_colbert_encoder(encoder, checkpoint):  # noqa: F811
    native = ColBERTEncoder(checkpoint, doc_maxlen=512)
    texts = ["Late interaction, in short: one vector per token!", "Solar panels convert light."]
    ours, theirs = native.encode_documents(texts), encoder.encode_documents(texts)
    for a, b in zip(ours.tokens, theirs.tokens):
        assert a.shape == b.shape
        assert (np.sum(a * b, axis=1) >= 0.999).all()
    q_native, q_fast = native.encode_query("late interaction"), encoder.encode_query("late interaction")
    assert q_fast.tokens.shape == q_native.tokens.shape == (32, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(q_fast.tokens, axis=1), 1.0, rtol=1e-5)  # normalized here
    assert (np.sum(q_fast.tokens * q_native.tokens, axis=1) >= 0.999).all()


def test_fastembed_encoder_in_an_index(tmp_path, encoder):
    index = LateIndex.create(tmp_path / "idx", encoder=encoder)
    index.add(["The violin has four strings.", "Solar panels make electricity."], ids=["v", "s"])
    before = [h.id for h in index.search("string instrument", k=2)]
    index.close()
    reopened = LateIndex.open(tmp_path / "idx")  # the manifest names the model and its folder
    assert reopened.encoder.kind == "fastembed"
    assert [h.id for h in reopened.search("string instrument", k=2)] == before


def test_missing_model_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderUnavailableError, match="specific_model_path"):
        FastEmbedEncoder("answerdotai/answerai-colbert-small-v1", cache_dir=str(tmp_path))
