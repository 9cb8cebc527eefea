"""A tiny stand-in for ColPali, in the folder layout fastembed reads, so that the page-image flow
runs offline (in the tests and the notebook). It is not a trained model: a page's vectors are
linear maps of its 14x14-pixel patches (ColPali's patch grid: 32 x 32 over a 448 x 448 page),
and a query's are word embeddings, where a colour's name embeds as a patch of that colour does:
"red" finds the pages with red on them.
With a network, use the real model instead: ``FastEmbedMultimodalEncoder("Qdrant/colpali-v1.3-fp16")``.

    python examples/tiny_colpali.py FOLDER      # writes the stand-in into FOLDER
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

DIM, VOCAB, GRID, PATCH = 128, 1000, 32, 14  # ColPali's output width and patch grid
COLOURS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255), "yellow": (255, 220, 0)}


def build(folder: str | Path, seed: int = 0) -> Path:
    """Write model.onnx, tokenizer and preprocessor files into ``folder``; returns it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = rng.standard_normal((VOCAB, DIM)).astype(np.float32)
    patches = (rng.standard_normal((3 * PATCH * PATCH, DIM)) / 20).astype(np.float32)
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<s>": 4}
    for word in [*COLOURS, *"the a of in what is was page pages with on show me find".split()]:
        vocab.setdefault(word, len(vocab))
    for name, rgb in COLOURS.items():  # a solid patch of the colour, as the preprocessor scales it
        pixel = (np.array(rgb, np.float32) / 255 - 0.5) / 0.5
        words[vocab[name]] = np.tile(pixel, PATCH * PATCH) @ patches
    inits = [
        numpy_helper.from_array(words, "words"),
        numpy_helper.from_array(patches, "patches"),
        numpy_helper.from_array(np.array(VOCAB, np.int64), "vocab"),
        numpy_helper.from_array(np.array([0, 3, GRID, PATCH, GRID, PATCH], np.int64), "grid"),
        numpy_helper.from_array(np.array([0, GRID * GRID, 3 * PATCH * PATCH], np.int64), "flat"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
    ]
    nodes = [
        # text: one vector per token id (ids beyond the table wrap around)
        helper.make_node("Mod", ["input_ids", "vocab"], ["ids"]),
        helper.make_node("Gather", ["words", "ids"], ["text"]),
        # image: [b, 3, 448, 448] -> [b, 1024, 588] patches -> [b, 1024, 128]
        helper.make_node("Reshape", ["pixel_values", "grid"], ["grid6"]),
        helper.make_node("Transpose", ["grid6"], ["cells"], perm=[0, 2, 4, 3, 5, 1]),
        helper.make_node("Reshape", ["cells", "flat"], ["flat_cells"]),
        helper.make_node("MatMul", ["flat_cells", "patches"], ["image"]),
        # the first 1024 positions (ColPali's image tokens) get the patches: pad, then cut to length
        helper.make_node("Mul", ["text", "zero_f"], ["zeros"]),
        helper.make_node("Concat", ["image", "zeros"], ["padded"], axis=1),
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "axis1"], ["length"]),
        helper.make_node("Slice", ["padded", "zero", "length", "axis1"], ["image_part"]),
        helper.make_node("Add", ["text", "image_part"], ["last_hidden_state"]),
    ]
    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero_f"))
    graph = helper.make_graph(
        nodes,
        "tiny-colpali",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "l"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "l"]),
            helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["b", 3, 448, 448]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["b", "l", DIM])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))

    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["<pad>", "<eos>", "<bos>", "<s>"])
    tokenizer.save(str(folder / "tokenizer.json"))
    special = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}
    (folder / "tokenizer_config.json").write_text(json.dumps({**special, "model_max_length": 512}))
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "config.json").write_text(json.dumps({"model_type": "tiny-colpali", "pad_token_id": 0}))
    preprocessor = {
        "image_processor_type": "SiglipImageProcessor",
        "do_resize": True,
        "size": {"height": 448, "width": 448},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return folder


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "tiny-colpali"))
