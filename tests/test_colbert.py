"""ColBERT checkpoints: the encoder follows colbert-ai's conventions and matches a torch reference.

No ColBERT checkpoint ships in a package and hub downloads fail here, so the test builds a
structurally real one (HF_ColBERT layout: ``bert.*`` weights, ``linear.weight``,
``artifact.metadata``) from the packaged MiniLM weights and a fixed random projection.
"""

import json
import shutil

import numpy as np
import pytest
from bert_reference import bert_hidden

from colcade import EncoderUnavailableError, LateIndex
from colcade.encoders.colbert import ColBERTEncoder
from colcade.encoders.default import FILES, read_weights, weights_file
from colcade.encoders.onnx_bert import read_safetensors, write_safetensors

DIM = 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("colbert-mini")
    weights = {f"bert.{k}": np.asarray(v) for k, v in read_weights(weights_file()).items()}
    weights["linear.weight"] = np.random.default_rng(0).standard_normal((DIM, 384)).astype(np.float32) / 20
    write_safetensors(path / "model.safetensors", weights)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(FILES / name, path / name)
    (path / "artifact.metadata").write_text(
        json.dumps({"query_maxlen": 32, "doc_maxlen": 40, "dim": DIM, "attend_to_mask_tokens": False})
    )
    return path


def reference(checkpoint, texts, is_query):
    """colbert-ai's conventions ('. ' + text, then the marker over the '.'; queries padded with
    [MASK], not attended to), run through BERT in numpy and the checkpoint's projection."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    maxlen = 32 if is_query else 40
    tok.enable_truncation(maxlen)
    tok.enable_padding(length=maxlen if is_query else None)
    weights = read_safetensors(checkpoint / "model.safetensors")
    config = json.loads((checkpoint / "config.json").read_text())
    punctuation = {tok.encode(c, add_special_tokens=False).ids[0] for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"}
    out = []
    for e in tok.encode_batch([". " + t for t in texts]):
        ids, mask = np.array(e.ids), np.array(e.attention_mask)
        ids[1] = 1 if is_query else 2  # [unused0] / [unused1]
        if is_query:
            ids[ids == 0] = 103  # [MASK] augmentation
        hidden = (
            bert_hidden(weights, config, ids.tolist(), mask.tolist())
            @ np.asarray(weights["linear.weight"], np.float64).T
        )
        hidden /= np.linalg.norm(hidden, axis=1, keepdims=True)
        out.append(hidden if is_query else hidden[(mask == 1) & ~np.isin(ids, list(punctuation))])
    return out


def test_documents_match_colbert_ai_conventions(checkpoint):
    texts = ["Late interaction, in short: one vector per token!", "A much longer passage " * 12]
    with pytest.warns(UserWarning, match="1 of 2 texts were longer than doc_maxlen=40"):
        got = ColBERTEncoder(checkpoint).encode_documents(texts)
    for mine, ref in zip(got.tokens, reference(checkpoint, texts, is_query=False)):
        assert mine.shape == ref.shape and mine.shape[1] == DIM
        assert (np.sum(mine * ref, axis=1) >= 0.999).all()


def test_queries_are_augmented_to_query_maxlen(checkpoint):
    encoder = ColBERTEncoder(checkpoint)
    got = encoder.encode_query("what is late interaction?")
    ref = reference(checkpoint, ["what is late interaction?"], is_query=True)[0]
    assert got.tokens.shape == (32, DIM)
    assert (np.sum(got.tokens * ref, axis=1) >= 0.999).all()


def test_index_with_a_colbert_checkpoint_reopens(tmp_path, checkpoint):
    encoder = ColBERTEncoder(checkpoint)
    index = LateIndex.create(tmp_path / "idx", encoder=encoder)
    index.add(["The violin has four strings.", "Solar panels make electricity."], ids=["v", "s"])
    before = [(h.id, h.score) for h in index.search("string instrument", k=2)]
    index.close()
    reopened = LateIndex.open(tmp_path / "idx")  # rebuilt from the manifest
    assert reopened.encoder.kind == "colbert" and reopened.encoder.dim == DIM
    assert [(h.id, h.score) for h in reopened.search("string instrument", k=2)] == before


def test_not_a_colbert_checkpoint(tmp_path, checkpoint):
    plain = tmp_path / "plain"
    plain.mkdir()
    weights = read_safetensors(checkpoint / "model.safetensors")
    write_safetensors(
        plain / "model.safetensors", {k: np.asarray(v) for k, v in weights.items() if k != "linear.weight"}
    )
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(FILES / name, plain / name)
    with pytest.raises(EncoderUnavailableError, match="linear.weight"):
        ColBERTEncoder(plain)  # a plain BERT model, no projection


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(EncoderUnavailableError, match="no checkpoint folder at"):
        ColBERTEncoder(tmp_path / "nowhere")


def test_unreachable_model_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderUnavailableError, match="not a local folder"):
        ColBERTEncoder("colbert-ir/colbertv2.0-not-here")


def test_a_bfloat16_checkpoint_loads_and_matches_its_reference(tmp_path, checkpoint):
    # Recent checkpoints ship bf16 weights; they used to be skipped, so the projection looked
    # missing ("not a ColBERT checkpoint").
    bf16 = tmp_path / "bf16"
    shutil.copytree(checkpoint, bf16)
    weights = {k: np.asarray(v) for k, v in read_safetensors(checkpoint / "model.safetensors").items()}
    write_safetensors(bf16 / "model.safetensors", weights, bfloat16=True)
    assert (bf16 / "model.safetensors").stat().st_size < 0.6 * (checkpoint / "model.safetensors").stat().st_size
    texts = ["Late interaction, in short: one vector per token!"]
    got = ColBERTEncoder(bf16).encode_documents(texts).tokens[0]
    ref = reference(bf16, texts, is_query=False)[0]  # the same bf16-rounded weights, in numpy
    assert got.shape == ref.shape and (np.sum(got * ref, axis=1) >= 0.999).all()
    full = ColBERTEncoder(checkpoint).encode_documents(texts).tokens[0]
    assert (np.sum(got * full, axis=1) >= 0.99).all()  # and close to the float32 weights'


def test_a_checkpoint_in_an_unreadable_dtype_is_named(tmp_path, checkpoint):
    import json as json_
    import struct

    odd = tmp_path / "f8"
    shutil.copytree(checkpoint, odd)
    path = odd / "model.safetensors"
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json_.loads(raw[8 : 8 + size])
    header["linear.weight"]["dtype"] = "F8_E4M3"
    head = json_.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + raw[8 + size :])
    with pytest.raises(EncoderUnavailableError, match="'linear.weight' is F8_E4M3"):
        ColBERTEncoder(odd)


def test_an_unsupported_architecture_is_refused_before_any_index_is_written(tmp_path, checkpoint):
    modern = tmp_path / "modern"
    shutil.copytree(checkpoint, modern)
    config = json.loads((modern / "config.json").read_text())
    (modern / "config.json").write_text(json.dumps({**config, "model_type": "modernbert"}))
    # BERT weights under a ModernBERT config: refused when the encoder is made, not at the first encode.
    with pytest.raises(EncoderUnavailableError, match="'modernbert'"):
        LateIndex.create(tmp_path / "idx", encoder=ColBERTEncoder(modern))
    assert not (tmp_path / "idx").exists()
    gemma = tmp_path / "gemma"
    shutil.copytree(checkpoint, gemma)
    (gemma / "config.json").write_text(json.dumps({**config, "model_type": "gemma"}))
    with pytest.raises(EncoderUnavailableError, match="cannot run on onnxruntime: its backbone is 'gemma'"):
        ColBERTEncoder(gemma, backend="onnxruntime")
    rotary = tmp_path / "rotary"
    shutil.copytree(checkpoint, rotary)
    (rotary / "config.json").write_text(json.dumps({**config, "position_embedding_type": "rotary"}))
    with pytest.raises(EncoderUnavailableError, match="positions are 'rotary'"):
        ColBERTEncoder(rotary, backend="onnxruntime")
    partial = tmp_path / "partial"
    shutil.copytree(checkpoint, partial)
    weights = read_safetensors(checkpoint / "model.safetensors")
    write_safetensors(
        partial / "model.safetensors", {k: np.asarray(v) for k, v in weights.items() if "layer.3." not in k}
    )
    with pytest.raises(EncoderUnavailableError, match="lacks 16 of the BERT weights"):
        ColBERTEncoder(partial)


@pytest.fixture(scope="module")
def pylate_folder(tmp_path_factory):
    """A checkpoint in PyLate's layout, built by hand: BERT weights at the root without a prefix,
    "[Q] " / "[D] " added to the vocabulary, the projection (with a bias) in 1_Dense/, and the
    settings in config_sentence_transformers.json."""
    from tokenizers import Tokenizer

    path = tmp_path_factory.mktemp("pylate-mini")
    weights = {k: np.asarray(v) for k, v in read_weights(weights_file()).items()}
    tok = Tokenizer.from_file(str(FILES / "tokenizer.json"))
    tok.add_tokens(["[Q] ", "[D] "])
    tok.save(str(path / "tokenizer.json"))
    rng = np.random.default_rng(1)
    grown = tok.get_vocab_size() - len(weights["embeddings.word_embeddings.weight"])
    extra = rng.standard_normal((grown, 384)).astype(np.float32) * 0.02
    weights["embeddings.word_embeddings.weight"] = np.concatenate([weights["embeddings.word_embeddings.weight"], extra])
    write_safetensors(path / "model.safetensors", weights)
    config = json.loads((FILES / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "vocab_size": tok.get_vocab_size()}))
    (path / "1_Dense").mkdir()
    dense = {
        "linear.weight": rng.standard_normal((DIM, 384)).astype(np.float32) / 20,
        "linear.bias": rng.standard_normal(DIM).astype(np.float32) / 10,
    }
    write_safetensors(path / "1_Dense" / "model.safetensors", dense)
    (path / "1_Dense" / "config.json").write_text(
        json.dumps(
            {
                "in_features": 384,
                "out_features": DIM,
                "bias": True,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )
    (path / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    settings = {
        "query_prefix": "[Q] ",
        "document_prefix": "[D] ",
        "query_length": 24,
        "document_length": 40,
        "attend_to_expansion_tokens": False,
        "do_query_expansion": True,
        "skiplist_words": list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    }
    (path / "config_sentence_transformers.json").write_text(json.dumps(settings))
    return path


def pylate_reference(path, text, is_query):
    """PyLate's conventions in numpy: [CLS] [Q]/[D] text [SEP]; queries padded with [MASK] to
    query_length (not attended to, all kept); documents without skiplist tokens; affine projection."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.no_padding()  # the shipped tokenizer.json pads to 128
    tok.no_truncation()
    weights = read_safetensors(path / "model.safetensors")
    dense = read_safetensors(path / "1_Dense" / "model.safetensors")
    config = json.loads((path / "config.json").read_text())
    marker = tok.token_to_id("[Q] " if is_query else "[D] ")
    body = tok.encode(text, add_special_tokens=False).ids[: (24 if is_query else 40) - 3]
    ids = [101, marker, *body, 102]
    mask = [1] * len(ids)
    if is_query:
        mask += [0] * (24 - len(ids))
        ids += [103] * (24 - len(ids))
    hidden = bert_hidden(weights, config, ids, mask) @ np.asarray(dense["linear.weight"], np.float64).T
    hidden += np.asarray(dense["linear.bias"], np.float64)
    hidden /= np.linalg.norm(hidden, axis=1, keepdims=True)
    skip = {tok.token_to_id(c) for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"}
    return hidden if is_query else hidden[[i not in skip for i in ids]]


def test_a_pylate_checkpoint_loads_with_its_own_settings(pylate_folder):
    encoder = ColBERTEncoder(pylate_folder)
    assert encoder.layout == "pylate" and encoder.dim == DIM
    assert (encoder.query_maxlen, encoder.doc_maxlen) == (24, 40)
    query = encoder.encode_query("what is late interaction?")
    ref = pylate_reference(pylate_folder, "what is late interaction?", is_query=True)
    assert query.tokens.shape == ref.shape == (24, DIM)
    assert (np.sum(query.tokens * ref, axis=1) >= 0.999).all()
    text = "Late interaction, in short: one vector per token!"
    doc = encoder.encode_documents([text]).tokens[0]
    ref = pylate_reference(pylate_folder, text, is_query=False)
    assert doc.shape == ref.shape and (np.sum(doc * ref, axis=1) >= 0.999).all()
    assert encoder.token_strings("what?", is_query=True)[:2] == ["[CLS]", "[Q]"]


def test_a_pylate_checkpoint_matches_pylate_itself_where_installed(tmp_path):
    # PyLate (and torch) are not colcade dependencies: this runs where they are installed.
    models = pytest.importorskip("pylate.models")
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    base = tmp_path / "base"
    vocab = json.loads((FILES / "tokenizer.json").read_text())["model"]["vocab"]
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
    )
    transformers.BertModel(config).save_pretrained(base)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (FILES / name).exists():
            shutil.copy(FILES / name, base / name)
    model = models.ColBERT(model_name_or_path=str(base), embedding_size=32, device="cpu")
    model.save(str(tmp_path / "pylate"))
    ours = ColBERTEncoder(tmp_path / "pylate")
    texts = ["Late interaction, in short: one vector per token!", "what is late interaction?"]
    for text in texts:
        for is_query in (True, False):
            theirs = np.asarray(model.encode([text], is_query=is_query)[0])
            mine = ours.encode_query(text).tokens if is_query else ours.encode_documents([text]).tokens[0]
            assert mine.shape == theirs.shape
            assert (np.sum(mine * theirs, axis=1) >= 0.999).all()


def test_pylate_settings_are_part_of_the_fingerprint_and_explanations_line_up(tmp_path, pylate_folder):
    plain = ColBERTEncoder(pylate_folder)
    other = tmp_path / "no-expansion"
    shutil.copytree(pylate_folder, other)
    settings = json.loads((other / "config_sentence_transformers.json").read_text())
    (other / "config_sentence_transformers.json").write_text(json.dumps({**settings, "do_query_expansion": False}))
    changed = ColBERTEncoder(other)
    assert changed.fingerprint != plain.fingerprint  # an index built with one is refused with the other
    query = "what, exactly, is late interaction?"
    rows = changed.encode_query(query).tokens
    assert len(rows) == len(changed.token_strings(query, is_query=True)) < 24  # no expansion, punctuation kept
    assert len(plain.encode_query(query).tokens) == 24


def test_a_single_vector_sentence_transformers_model_is_named(tmp_path, pylate_folder):
    pooled = tmp_path / "pooled"
    shutil.copytree(pylate_folder, pooled)
    modules = json.loads((pooled / "modules.json").read_text())
    modules.insert(1, {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    (pooled / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(EncoderUnavailableError, match="single-vector sentence-transformers model"):
        ColBERTEncoder(pooled)
