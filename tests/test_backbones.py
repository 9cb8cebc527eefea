"""Late-interaction checkpoints on every backbone people use: BERT, XLM-RoBERTa, ModernBERT; fp32,
fp16 and bf16 weights; PyLate's layout and colbert-ai's.

No checkpoint can be downloaded here, so each test builds a small random one with transformers
(the real model classes, saved as they save themselves) and compares colcade's vectors with a
torch reference written here from the conventions (markers, query expansion, skiplist,
projection), not from colcade's code. Every backbone here runs on colcade's onnxruntime graphs by
default, so the reference checks those graphs; the torch backend is checked against them.
"""

import json
import shutil
import sys

import numpy as np
import pytest

from colcade import EncoderUnavailableError, LateIndex
from colcade.encoders import describe
from colcade.encoders.colbert import ColBERTEncoder
from colcade.encoders.default import FILES

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

DIM, HIDDEN, QLEN, DLEN = 16, 32, 12, 24
SKIP = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# BERT's special tokens as XLM-RoBERTa names them (the vocabulary is MiniLM's, renamed).
ROBERTA = {"[CLS]": "<s>", "[SEP]": "</s>", "[PAD]": "<pad>", "[MASK]": "<mask>", "[UNK]": "<unk>"}
TEXTS = ["Late interaction, in short: one vector per token!", "what is a ModernBERT backbone?"]


def _tokenizer(folder, backbone, markers):
    """MiniLM's WordPiece vocabulary (RoBERTa's special names for XLM-R), ``markers`` added."""
    from tokenizers import Tokenizer

    spec = json.loads((FILES / "tokenizer.json").read_text())
    if backbone == "xlm-roberta":
        spec["model"]["vocab"] = {ROBERTA.get(t, t): i for t, i in spec["model"]["vocab"].items()}
        spec["model"]["unk_token"] = "<unk>"
        for added in spec["added_tokens"]:
            added["content"] = ROBERTA.get(added["content"], added["content"])
        spec["post_processor"] = None
    spec["truncation"] = spec["padding"] = None
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.add_tokens(markers)
    tok.save(str(folder / "tokenizer.json"))
    return tok


def _model(backbone, vocab_size):
    torch.manual_seed(0)
    common = dict(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=3, num_attention_heads=4)
    if backbone == "bert":
        return transformers.BertModel(transformers.BertConfig(**common, intermediate_size=48))
    if backbone == "xlm-roberta":
        config = transformers.XLMRobertaConfig(
            **common, intermediate_size=48, pad_token_id=0, type_vocab_size=1, max_position_embeddings=64
        )
        return transformers.XLMRobertaModel(config)
    # A window of 8 tokens: the documents here are longer, so local attention layers matter.
    config = transformers.ModernBertConfig(
        **common,
        intermediate_size=48,
        global_attn_every_n_layers=2,
        local_attention=8,
        pad_token_id=0,
        cls_token_id=101,
        sep_token_id=102,
        bos_token_id=101,
        eos_token_id=102,
    )
    return transformers.ModernBertModel(config)


def build(folder, backbone, layout, dtype):
    """A random checkpoint in ``layout``; returns the conventions the reference applies."""
    folder.mkdir()
    pylate = layout == "pylate"
    if pylate:
        markers = ["[Q] ", "[D] "]
    elif backbone == "bert":
        markers = []  # colbert-ai's BERT markers are [unused0] / [unused1], already in the vocabulary
    else:
        markers = ["[QueryMarker]", "[DocumentMarker]"]  # as jina-colbert-v2's artifact.metadata names them
    tok = _tokenizer(folder, backbone, markers)
    model = _model(backbone, tok.get_vocab_size()).to(getattr(torch, dtype))
    rng = np.random.default_rng(1)
    weight = (rng.standard_normal((DIM, HIDDEN)) / 5).astype(np.float32)
    bias = (rng.standard_normal(DIM) / 10).astype(np.float32) if pylate else np.zeros(DIM, np.float32)
    if pylate:
        model.save_pretrained(folder)
        (folder / "1_Dense").mkdir()
        dense = {"linear.weight": torch.from_numpy(weight), "linear.bias": torch.from_numpy(bias)}
        safetensors_torch.save_file(dense, str(folder / "1_Dense" / "model.safetensors"))
        dense_config = {"in_features": HIDDEN, "out_features": DIM, "bias": True}
        (folder / "1_Dense" / "config.json").write_text(
            json.dumps({**dense_config, "activation_function": "torch.nn.modules.linear.Identity"})
        )
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
        ]
        (folder / "modules.json").write_text(json.dumps(modules))
        settings = {
            "query_prefix": "[Q] ",
            "document_prefix": "[D] ",
            "query_length": QLEN,
            "document_length": DLEN,
            "do_query_expansion": True,
            "attend_to_expansion_tokens": False,
            "skiplist_words": SKIP,
        }
        (folder / "config_sentence_transformers.json").write_text(json.dumps(settings))
        q_marker, d_marker = "[Q] ", "[D] "
    else:  # HF_ColBERT: the backbone under its prefix, `linear` beside it, one file
        model.config.save_pretrained(folder)
        state = {f"{model.base_model_prefix}.{k}": v.contiguous() for k, v in model.state_dict().items()}
        state["linear.weight"] = torch.from_numpy(weight).to(getattr(torch, dtype))
        safetensors_torch.save_file(state, str(folder / "model.safetensors"))
        q_marker, d_marker = ("[unused0]", "[unused1]") if backbone == "bert" else tuple(markers)
        meta = {"query_maxlen": QLEN, "doc_maxlen": DLEN, "query_token_id": q_marker, "doc_token_id": d_marker}
        (folder / "artifact.metadata").write_text(json.dumps(meta))
    if pylate and backbone == "xlm-roberta":  # the tokenizer names its special tokens (colbert-ai: defaults)
        roles = {"cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>", "mask_token": "<mask>"}
        (folder / "tokenizer_config.json").write_text(json.dumps({**roles, "unk_token": "<unk>"}))
    names = ROBERTA if backbone == "xlm-roberta" else {t: t for t in ROBERTA}
    ids = {role: tok.token_to_id(names[role]) for role in ("[CLS]", "[SEP]", "[MASK]")}
    weight_used = np.asarray(torch.from_numpy(weight).to(getattr(torch, dtype)).float())  # as stored
    return {
        "cls": ids["[CLS]"],
        "sep": ids["[SEP]"],
        "mask": ids["[MASK]"],
        "markers": (tok.token_to_id(q_marker), tok.token_to_id(d_marker)),
        "skip": {tok.token_to_id(c) for c in SKIP}
        if pylate
        else {tok.encode(c, add_special_tokens=False).ids[0] for c in SKIP},
        "weight": weight_used,
        "bias": bias,
    }


def reference(folder, conv, text, is_query):
    """[CLS] marker text [SEP] through the float32 transformer and the projection; queries padded
    with the mask token to the query length (not attended to, all kept); documents without skiplist."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    maxlen = QLEN if is_query else DLEN
    body = tok.encode(text, add_special_tokens=False).ids[: maxlen - 3]
    ids = [conv["cls"], conv["markers"][0 if is_query else 1], *body, conv["sep"]]
    mask = [1] * len(ids)
    if is_query:
        mask += [0] * (maxlen - len(ids))
        ids += [conv["mask"]] * (maxlen - len(ids))
    model = transformers.AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.inference_mode():
        hidden = model(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([mask])).last_hidden_state[0]
    out = hidden.double().numpy() @ conv["weight"].T.astype(np.float64) + conv["bias"]
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out if is_query else out[[i not in conv["skip"] for i in ids]]


CASES = [(b, "pylate", d) for b in ("bert", "xlm-roberta", "modernbert") for d in ("float32", "float16", "bfloat16")]
CASES += [("bert", "colbert-ai", "float32"), ("xlm-roberta", "colbert-ai", "bfloat16")]


@pytest.mark.parametrize(("backbone", "layout", "dtype"), CASES)
def test_vectors_match_a_torch_reference(tmp_path, backbone, layout, dtype):
    folder = tmp_path / "model"
    conv = build(folder, backbone, layout, dtype)
    encoder = ColBERTEncoder(folder, device="cpu")
    assert encoder.layout == layout and encoder.dim == DIM
    assert encoder.runtime == "onnxruntime (cpu)"  # every backbone here has an onnxruntime graph
    assert describe(encoder)["runtime"] == encoder.runtime  # recorded with the index
    for text in TEXTS:
        query = encoder.encode_query(text).tokens
        ref = reference(folder, conv, text, is_query=True)
        assert query.shape == ref.shape == (QLEN, DIM)
        assert np.sum(query * ref, axis=1).min() >= 0.999
        doc = encoder.encode_documents([text]).tokens[0]
        ref = reference(folder, conv, text, is_query=False)
        assert doc.shape == ref.shape
        assert np.sum(doc * ref, axis=1).min() >= 0.999


@pytest.mark.parametrize("backbone", ["bert", "xlm-roberta", "modernbert"])
def test_the_torch_backend_gives_the_onnxruntime_vectors(tmp_path, backbone):
    build(tmp_path / "model", backbone, "pylate", "float32")
    onnx = ColBERTEncoder(tmp_path / "model", device="cpu")
    on_torch = ColBERTEncoder(tmp_path / "model", backend="torch", device="cpu")
    assert on_torch.runtime == "torch (cpu)" and on_torch.fingerprint == onnx.fingerprint  # same model, same index
    a, b = onnx.encode_documents(TEXTS).tokens, on_torch.encode_documents(TEXTS).tokens
    assert all(x.shape == y.shape and np.sum(x * y, axis=1).min() >= 0.9999 for x, y in zip(a, b))


def test_an_index_built_on_torch_reopens_on_onnxruntime(tmp_path):
    build(tmp_path / "model", "modernbert", "pylate", "bfloat16")
    encoder = ColBERTEncoder(tmp_path / "model", backend="torch")
    texts = ["ModernBERT uses rotary positions.", "Bananas are yellow.", "Local attention windows."]
    with LateIndex.create(tmp_path / "idx", encoder=encoder) as index:
        index.add(texts, ids=["a", "b", "c"])
        assert index.stats().encoder["runtime"] == "torch (cpu)"
        before = index.search("rotary positions", k=3, exhaustive=True)
    with LateIndex.open(tmp_path / "idx") as index:  # rebuilt from the manifest: the same model, on its graph
        assert index.stats().encoder["runtime"] == "onnxruntime (cpu)"
        after = index.search("rotary positions", k=3, exhaustive=True)
    assert [h.id for h in after] == [h.id for h in before]
    assert np.allclose([h.score for h in after], [h.score for h in before], rtol=1e-3)  # float32 on both


def test_without_torch_a_torch_backbone_names_the_install(tmp_path, monkeypatch):
    build(tmp_path / "model", "modernbert", "pylate", "float32")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    (tmp_path / "model" / "config.json").write_text(json.dumps({**config, "hidden_activation": "silu"}))
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(EncoderUnavailableError, match=r"'silu'.*pip install \"colcade\[torch\]\""):
        ColBERTEncoder(tmp_path / "model")


def test_checkpoints_are_checked_when_the_encoder_is_made(tmp_path):
    build(tmp_path / "model", "modernbert", "pylate", "float32")
    custom = tmp_path / "custom"
    shutil.copytree(tmp_path / "model", custom)
    config = json.loads((custom / "config.json").read_text())
    config.update(model_type="my-colbert", auto_map={"AutoModel": "modeling_mine.MyModel"})
    (custom / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderUnavailableError, match="trust_remote_code=True"):
        ColBERTEncoder(custom)
    partial = tmp_path / "partial"
    shutil.copytree(tmp_path / "model", partial)
    state = safetensors_torch.load_file(str(partial / "model.safetensors"))
    safetensors_torch.save_file(
        {k: v for k, v in state.items() if "layers.2." not in k}, str(partial / "model.safetensors")
    )
    with pytest.raises(EncoderUnavailableError, match=r"lacks \d+ of the weights the 'modernbert' graph reads"):
        ColBERTEncoder(partial)
    with pytest.raises(EncoderUnavailableError, match=r"lacks \d+ of the weights its 'modernbert' model reads"):
        ColBERTEncoder(partial, backend="torch")
    with pytest.raises(EncoderUnavailableError, match="unknown device"):
        ColBERTEncoder(tmp_path / "model", device="tpu")

    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():  # asking for a GPU that is not there
        build(tmp_path / "bert", "bert", "pylate", "float32")
        with pytest.raises(EncoderUnavailableError, match="pip install onnxruntime-gpu"):
            ColBERTEncoder(tmp_path / "bert", device="cuda")
