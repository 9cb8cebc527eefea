"""ModernBERT (GTE-ModernColBERT, LateOn and the other ModernBERT PyLate models) as an ONNX graph
built from its weights, so these models run on onnxruntime without torch.

The architecture, as transformers' ``ModernBertModel`` computes it: token embeddings and a
LayerNorm (no positions); per layer, pre-norm attention (no norm before the first) with rotary
positions, full attention or a sliding window of ``local_attention // 2`` tokens each side
(``layer_types``, or every ``global_attn_every_n_layers``-th layer global), then a pre-norm
gated MLP (``GELU(input) * gate``); a final LayerNorm. Biases where the config has them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from colcade.encoders.onnx_graph import Graph
from colcade.errors import EncoderUnavailableError


def layer_types(config: dict[str, Any]) -> list[str]:
    """``"full_attention"`` or ``"sliding_attention"`` per layer (transformers 5 writes the list;
    older configs say every ``global_attn_every_n_layers``-th layer is global)."""
    n = config["num_hidden_layers"]
    if config.get("layer_types"):
        return list(config["layer_types"])
    every = config.get("global_attn_every_n_layers", 3)
    return ["full_attention" if i % every == 0 else "sliding_attention" for i in range(n)]


def rope_theta(config: dict[str, Any], kind: str) -> float:
    """The rotary base of a layer kind: ``rope_parameters`` (transformers 5), else the older keys."""
    parameters = (config.get("rope_parameters") or {}).get(kind) or {}
    if parameters.get("rope_type", "default") != "default":
        raise EncoderUnavailableError(f"rotary scaling {parameters['rope_type']!r} is not supported")
    if "rope_theta" in parameters:
        return float(parameters["rope_theta"])
    if kind == "full_attention":
        return float(config.get("global_rope_theta", 160_000.0))
    return float(config.get("local_rope_theta", 10_000.0))


def unsupported(config: dict[str, Any]) -> str | None:
    """Why ``build_modernbert`` cannot run a model with this config.json, or None when it can."""
    if config.get("auto_map"):
        return "it ships its own modelling code (auto_map in config.json)"
    scaled = {k: v.get("rope_type") for k, v in (config.get("rope_parameters") or {}).items() if isinstance(v, dict)}
    scaled = {k: t for k, t in scaled.items() if t not in (None, "default")}
    if scaled or (config.get("rope_scaling") or {}).get("rope_type", "default") != "default":
        return f"its rotary positions are scaled ({scaled or config['rope_scaling']}; the builder runs plain ones)"
    activation = config.get("hidden_activation", "gelu")
    if activation != "gelu":
        return f"its activation is {activation!r} (the builder runs GELU)"
    missing = [
        k for k in ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size") if k not in config
    ]
    return f"config.json lacks {', '.join(missing)}" if missing else None


def weight_names(config: dict[str, Any]) -> list[str]:
    """The weights the graph reads (without a checkpoint's prefix)."""
    names = [TOKENS, "embeddings.norm.weight", "final_norm.weight"]
    for i in range(config["num_hidden_layers"]):
        names += [f"layers.{i}.{n}.weight" for n in ("attn.Wqkv", "attn.Wo", "mlp_norm", "mlp.Wi", "mlp.Wo")]
        names += [f"layers.{i}.attn_norm.weight"] if i else []
    return names


TOKENS = "embeddings.tok_embeddings.weight"


def _prefix(weights: dict[str, np.ndarray]) -> str:
    """What a checkpoint puts before ModernBertModel's names: "" (PyLate), "model." (MaskedLM)."""
    return next((n[: -len(TOKENS)] for n in weights if n.endswith(TOKENS)), "")


def check_modernbert(weights: dict[str, np.ndarray], config: dict[str, Any], where: Any) -> None:
    """Every weight ``build_modernbert`` reads is there (checked when an encoder is made)."""
    reason = unsupported(config)
    if reason:
        raise EncoderUnavailableError(f"{where} cannot run on onnxruntime: {reason}")
    prefix = _prefix(weights)
    missing = [prefix + n for n in weight_names(config) if prefix + n not in weights]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:3])
        raise EncoderUnavailableError(
            f"{where} lacks {len(missing)} of the weights the 'modernbert' graph reads ({shown}...): not a "
            "ModernBERT checkpoint, or one saved under other names"
        )


def _rotary_tables(g: Graph, theta: float, head_dim: int, limit: int, name: str) -> tuple[str, str]:
    """cos and sin ``[limit, head_dim]`` of positions 0..limit-1 (as transformers: halves repeated)."""
    inverse = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)
    angles = np.outer(np.arange(limit, dtype=np.float32), inverse)
    angles = np.concatenate([angles, angles], axis=1)
    return g.const(f"{name}.cos", np.cos(angles).astype(np.float32)), g.const(
        f"{name}.sin", np.sin(angles).astype(np.float32)
    )


def build_modernbert(
    weights: dict[str, np.ndarray],
    config: dict[str, Any],
    projection: np.ndarray | None = None,
    projection_bias: np.ndarray | None = None,
    int8: bool = False,
) -> bytes:
    """Serialized ONNX model: (input_ids, attention_mask) int64 [b, l] -> hidden float32 [b, l, h],
    through ``projection`` (``[out, hidden]``, and ``projection_bias``) where given."""
    reason = unsupported(config)
    if reason:
        raise EncoderUnavailableError(f"cannot build this model: {reason}")
    prefix = _prefix(weights)
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(config.get("norm_eps", 1e-5))
    limit = int(config.get("max_position_embeddings", 8192))
    window = int(config.get("local_attention", 128)) // 2
    g = Graph(int8)

    def w(name: str) -> np.ndarray | None:
        found = weights.get(prefix + name)
        return None if found is None else np.ascontiguousarray(found, dtype=np.float32)

    def norm(x: str, name: str) -> str:
        weight = w(f"{name}.weight")
        assert weight is not None
        return g.layer_norm(x, name, weight, w(f"{name}.bias"), eps)

    def linear(x: str, name: str) -> str:
        weight = w(f"{name}.weight")
        assert weight is not None
        return g.linear(x, name, weight, w(f"{name}.bias"))

    length = g.length()
    zero = g.const("m_zero", np.array([0], np.int64))
    x = norm(g.op("Gather", [g.const("tok", w(TOKENS)), "input_ids"]), "embeddings.norm")
    padding = g.padding_bias()  # [b, 1, 1, l]
    # The sliding window: -1e9 where |i - j| > window, [l, l], added to the padding bias.
    steps = g.op(
        "Range",
        [
            g.const("m_start", np.array(0, np.int64)),
            g.op("Squeeze", [length, zero]),
            g.const("m_step", np.array(1, np.int64)),
        ],
    )
    distance = g.op(
        "Abs", [g.op("Sub", [g.op("Unsqueeze", [steps, g.const("m_ax1", np.array([1], np.int64))]), steps])]
    )
    far = g.op("Cast", [g.op("Greater", [distance, g.const("m_window", np.array(window, np.int64))])], to=g.types.FLOAT)
    sliding = g.op("Add", [padding, g.op("Mul", [far, "neg"])])
    tables = {
        kind: tuple(
            g.op("Slice", [table, zero, length])
            for table in _rotary_tables(g, rope_theta(config, kind), head_dim, limit, kind)
        )
        for kind in ("full_attention", "sliding_attention")
    }
    qkv_shape = g.const("qkv_shape", np.array([0, 0, 3, heads, head_dim], np.int64))
    ctx_shape = g.const("ctx_shape", np.array([0, 0, hidden], np.int64))

    def rotate(t: str, cos: str, sin: str) -> str:  # t * cos + rotate_half(t) * sin
        first, second = g.split(t, [head_dim // 2, head_dim // 2])
        rotated = g.op("Concat", [g.op("Neg", [second]), first], axis=-1)
        return g.op("Add", [g.op("Mul", [t, cos]), g.op("Mul", [rotated, sin])])

    for i, kind in enumerate(layer_types(config)):
        p = f"layers.{i}."
        h = norm(x, p + "attn_norm") if i else x
        qkv = g.op("Transpose", [g.op("Reshape", [linear(h, p + "attn.Wqkv"), qkv_shape])], perm=[2, 0, 3, 1, 4])
        q, k, v = (g.op("Gather", [qkv, g.const(f"{p}idx{j}", np.array(j, np.int64))], axis=0) for j in range(3))
        cos, sin = tables[kind]
        context = g.attention(
            rotate(q, cos, sin), rotate(k, cos, sin), v, sliding if kind == "sliding_attention" else padding, head_dim
        )
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), ctx_shape])
        x = g.op("Add", [x, linear(context, p + "attn.Wo")])
        up = linear(norm(x, p + "mlp_norm"), p + "mlp.Wi")
        gated_in, gate = g.split(up, [config["intermediate_size"]] * 2)
        x = g.op("Add", [x, linear(g.op("Mul", [g.gelu(gated_in), gate]), p + "mlp.Wo")])
    x = norm(x, "final_norm")
    if projection is not None:
        bias = projection_bias if projection_bias is not None and np.any(projection_bias) else None
        x = g.linear(x, "projection", projection, bias)
        hidden = projection.shape[0]
    return g.finish(x, hidden, "modernbert")
