"""A BERT-family encoder as an ONNX graph built from its safetensors weights, run by onnxruntime.

The graph is written out op by op (embeddings, then per layer: fused QKV projection,
softmax attention, output projection, erf-GELU feed-forward, post-LayerNorms), so no torch
and no exporter is needed, neither at install nor at run time, and nothing is cached on disk:
building the model in memory takes well under a second. Output: the last hidden state
``[batch, length, hidden]`` (float32), matching transformers' ``BertModel`` to ~1e-6, or its
linear projection (ColBERT checkpoints).
"""

from __future__ import annotations

import json
import struct
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from colcade.encoders.onnx_graph import Graph
from colcade.errors import EncoderUnavailableError

# onnx and onnxruntime are core dependencies, imported where used: `import colcade` stays quick.

_DTYPES: dict[str, Any] = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # read as raw bits, widened to float32 below (numpy has no bfloat16)
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def to_bfloat16(array: np.ndarray) -> np.ndarray:
    """float32 values as bfloat16 bits (uint16), rounded to nearest even, as torch rounds."""
    bits = np.ascontiguousarray(array, np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def from_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) as float32 values (exact: bfloat16 is float32's top half)."""
    return (np.asarray(bits, np.uint32) << 16).view(np.float32)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], bfloat16: bool = False) -> None:
    """Write tensors in the safetensors layout (for tests and for converted checkpoints);
    ``bfloat16`` stores float32 tensors as BF16, as many recent checkpoints ship."""
    names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        array = np.asarray(array)
        dtype = names[array.dtype]
        if bfloat16 and dtype == "F32":
            array, dtype = to_bfloat16(array), "BF16"
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(np.shape(array)),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def _header(path: Path) -> tuple[dict[str, Any], int]:
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    return header, 8 + size


def safetensors_names(path: Path) -> list[str]:
    """The tensor names of a .safetensors file (its header only: nothing else is read)."""
    return list(_header(path)[0])


def read_safetensors(path: Path, names: Any = None) -> dict[str, np.ndarray]:
    """Tensors of a .safetensors file (the format is a JSON header and raw data), all or those in
    ``names``: memory-mapped, except BF16 ones, widened to float32 (numpy has no bfloat16). A dtype
    numpy cannot hold (the float8 kinds) is an EncoderUnavailableError naming the tensor."""
    header, start_of_data = _header(path)
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=start_of_data)
    tensors = {}
    for name, info in header.items():
        if names is not None and name not in names:
            continue
        if info["dtype"] not in _DTYPES:
            raise EncoderUnavailableError(
                f"{path}: tensor {name!r} is {info['dtype']}, which colcade cannot read "
                f"({', '.join(_DTYPES)} are supported); convert the checkpoint to float32, float16 or bfloat16"
            )
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = from_bfloat16(array) if info["dtype"] == "BF16" else array
    return tensors


def read_quantized_onnx(path: Path) -> dict[str, np.ndarray]:
    """BERT weights, by transformers' names, from an ONNX export with int8 weights.

    The export stores each weight as ``int8 * scale`` (a Cast and a Mul before its use) and
    names only the biases and norms; a MatMul's weight is named after the bias added to its
    output. Weights come back dequantized to float32, ``[out, in]`` like a Linear layer's.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    weights: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if name.endswith("_q"):
            base = name[: -len("_q")]
            value = array.astype(np.float32) * arrays[base + "_scale"]
            mul = consumers[consumers[name][0].output[0]][0]
            use = consumers[mul.output[0]][0]
            if use.op_type == "Gather":  # embeddings keep their name
                weights[base] = value
            else:  # MatMul [in, out]: named by the bias its output gets
                bias = next(i for c in consumers[use.output[0]] for i in c.input if i.endswith(".bias"))
                weights[bias[: -len("bias")] + "weight"] = np.ascontiguousarray(value.T)
        elif array.dtype == np.float32 and "." in name and not name.endswith("_scale"):
            weights[name] = array
    prefix = next(n.split("embeddings.")[0] for n in weights if "embeddings." in n)
    return {n[len(prefix) :]: a for n, a in weights.items()}


_LAYER = (
    [f"attention.self.{n}.{p}" for n in ("query", "key", "value") for p in ("weight", "bias")]
    + [f"{n}.{p}" for n in ("attention.output.dense", "intermediate.dense", "output.dense") for p in ("weight", "bias")]
    + [f"{n}.{p}" for n in ("attention.output.LayerNorm", "output.LayerNorm") for p in ("weight", "bias")]
)
_EMBEDDINGS = [
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "embeddings.LayerNorm.bias",
]


def modern_names(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """LayerNorm parameters under today's names: older BERT checkpoints (and some exports) save
    them as ``gamma`` / ``beta``, which transformers still reads."""
    renamed = {}
    for name, array in weights.items():
        if name.endswith("LayerNorm.gamma"):
            name = name[: -len("gamma")] + "weight"
        elif name.endswith("LayerNorm.beta"):
            name = name[: -len("beta")] + "bias"
        renamed[name] = array
    return renamed


# The encoders onnx_bert builds: BERT, and RoBERTa / XLM-RoBERTa (BERT's layers; positions counted
# from ``pad_token_id + 1``, one token type).
BUILDS = ("bert", "roberta", "xlm-roberta")


def _prefix(weights: dict[str, np.ndarray]) -> str:
    """What a checkpoint puts before BERT's names: "" (BertModel), "bert." (ColBERT), "roberta."..."""
    key = "embeddings.word_embeddings.weight"
    return next((n[: -len(key)] for n in weights if n.endswith(key)), "")


def unsupported(config: dict[str, Any]) -> str | None:
    """Why ``build_bert`` cannot run a model with this config.json, or None when it can."""
    kind = config.get("model_type", "bert")
    if kind not in BUILDS:
        return f"its backbone is {kind!r} (colcade's onnxruntime graphs run BERT, XLM-RoBERTa and ModernBERT)"
    if config.get("auto_map"):
        return "it ships its own modelling code (auto_map in config.json)"
    if config.get("position_embedding_type", "absolute") != "absolute":
        return f"its positions are {config['position_embedding_type']!r} (the builder runs absolute ones)"
    if config.get("hidden_act", "gelu") != "gelu":
        return f"its activation is {config['hidden_act']!r} (the builder runs GELU)"
    missing = [k for k in ("hidden_size", "num_attention_heads", "num_hidden_layers") if k not in config]
    return f"config.json lacks {', '.join(missing)}" if missing else None


def check_bert(weights: dict[str, np.ndarray], config: dict[str, Any], where: Any) -> None:
    """What ``build_bert`` needs, checked up front (so an encoder is refused when it is made, before
    an index folder is written): a configuration it can run, and every weight it reads."""
    reason = unsupported(config)
    if reason:
        raise EncoderUnavailableError(f"{where} cannot run on onnxruntime: {reason}")
    prefix = _prefix(weights)
    wanted = _EMBEDDINGS + [f"encoder.layer.{i}.{n}" for i in range(config["num_hidden_layers"]) for n in _LAYER]
    missing = [prefix + n for n in wanted if prefix + n not in weights]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:3])
        raise EncoderUnavailableError(
            f"{where} lacks {len(missing)} of the BERT weights colcade needs ({shown}...): not a BERT checkpoint, "
            "or one saved under other names"
        )


def build_bert(
    weights: dict[str, np.ndarray],
    config: dict[str, Any],
    projection: np.ndarray | None = None,
    projection_bias: np.ndarray | None = None,
    int8: bool = False,
) -> bytes:
    """Serialized ONNX model: (input_ids, attention_mask) int64 [b, l] -> hidden float32 [b, l, h].

    ``projection`` ([out, hidden], as ColBERT's ``linear``; ``projection_bias`` [out] where it has
    one, as PyLate's Dense may) maps the last hidden state to ``out`` dimensions inside the graph.
    ``int8``: every weight matrix product in 8-bit integers (``onnx_graph.Graph``).
    """
    reason = unsupported(config)
    if reason:
        raise EncoderUnavailableError(f"cannot build this model: {reason}")
    prefix = _prefix(weights)
    # RoBERTa counts positions from pad_token_id + 1 (right padding: real tokens come first).
    first_position = config.get("pad_token_id", 1) + 1 if config.get("model_type") in ("roberta", "xlm-roberta") else 0
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    eps = float(config.get("layer_norm_eps", 1e-12))
    g = Graph(int8)

    def w(name: str) -> np.ndarray:
        return np.ascontiguousarray(weights[prefix + name], dtype=np.float32)

    def layer_norm(x: str, name: str) -> str:
        return g.layer_norm(x, name, w(f"{name}.weight"), w(f"{name}.bias"), eps)

    def linear(x: str, name: str) -> str:
        return g.linear(x, name, w(f"{name}.weight"), w(f"{name}.bias"))

    first = g.const("first_position", np.array([first_position], np.int64))
    end = g.op("Add", [g.length(), first])  # the last position, plus one
    words = g.op("Gather", [g.const("word", w("embeddings.word_embeddings.weight")), "input_ids"])
    positions = g.op("Slice", [g.const("pos", w("embeddings.position_embeddings.weight")), first, end])
    embedded = g.op(
        "Add", [g.op("Add", [words, positions]), g.const("type0", w("embeddings.token_type_embeddings.weight")[0])]
    )
    x = layer_norm(embedded, "embeddings.LayerNorm")
    padding = g.padding_bias()
    qkv_shape = g.const("qkv_shape", np.array([0, 0, 3, heads, hidden // heads], np.int64))
    ctx_shape = g.const("ctx_shape", np.array([0, 0, hidden], np.int64))

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        qkv_w = np.concatenate([w(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")])
        qkv_b = np.concatenate([w(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
        qkv = g.op(
            "Transpose", [g.op("Reshape", [g.linear(x, f"{p}qkv", qkv_w, qkv_b), qkv_shape])], perm=[2, 0, 3, 1, 4]
        )
        q, k, v = (g.op("Gather", [qkv, g.const(f"{p}idx{j}", np.array(j, np.int64))], axis=0) for j in range(3))
        context = g.attention(q, k, v, padding, hidden // heads)  # [b, heads, l, d]
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), ctx_shape])
        x = layer_norm(
            g.op("Add", [x, linear(context, p + "attention.output.dense")]), p + "attention.output.LayerNorm"
        )
        h = g.gelu(linear(x, p + "intermediate.dense"))
        x = layer_norm(g.op("Add", [x, linear(h, p + "output.dense")]), p + "output.LayerNorm")
    if projection is not None:
        bias = projection_bias if projection_bias is not None and np.any(projection_bias) else None
        x = g.linear(x, "projection", projection, bias)
        hidden = projection.shape[0]
    return g.finish(x, hidden, "bert")


def providers(device: str | None) -> list[str]:
    """onnxruntime's execution providers for ``device``: ``"cuda"`` (or ``"cuda:N"``) needs
    onnxruntime-gpu; ``None`` takes CUDA where this onnxruntime has it, else the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device is None:
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.split(":")[0] != "cuda":
        raise EncoderUnavailableError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")
    if "CUDAExecutionProvider" not in available:
        raise EncoderUnavailableError(
            f"device={device!r} needs onnxruntime's CUDA provider, which this onnxruntime lacks "
            f"(it has {', '.join(available)}): pip install onnxruntime-gpu, or use device='cpu'"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def device_id(device: str | None) -> int:
    """The N of ``"cuda:N"`` (0 otherwise)."""
    return int(device.split(":")[1]) if device and ":" in device else 0


def session(model: bytes | Path, threads: int | None = None, device: str | None = "cpu") -> Any:
    """An onnxruntime session over a serialized model (or the file that holds one), on ``device``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    source = str(model) if isinstance(model, Path) else model
    chosen: list[Any] = providers(device)
    if chosen[0] == "CUDAExecutionProvider":
        chosen[0] = ("CUDAExecutionProvider", {"device_id": device_id(device)})
    return ort.InferenceSession(source, options, providers=chosen)


def runtime(device: str | None) -> str:
    """Where an onnxruntime model runs, in words: ``"onnxruntime (cpu)"``."""
    return f"onnxruntime ({'cuda' if providers(device)[0] == 'CUDAExecutionProvider' else 'cpu'})"


class LazySession:
    """Builds the model on first use (once, whichever thread gets there first), then runs it.

    Building takes about half a second, so an encoder that is only opened (an index checked
    against its fingerprint) never pays for it.
    """

    def __init__(self, build: Callable[[], bytes], threads: int | None = None, device: str | None = "cpu") -> None:
        providers(device)  # an unknown or unavailable device is an error now, not at the first encode
        self._build, self._threads, self._device = build, threads, device
        self._session: Any = None
        self._lock = threading.Lock()

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    # Through a file: a session made from bytes keeps a copy of them (the whole
                    # model again, ~90 MB for the default encoder), and the bytes go once written.
                    with tempfile.TemporaryDirectory(prefix="colcade-model-") as folder:
                        path = Path(folder) / "model.onnx"
                        path.write_bytes(self._build())
                        self._session = session(path, self._threads, self._device)
        return np.asarray(self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0])
