"""BERT's forward pass in plain numpy: an independent reference for the ONNX graph colcade builds.

Written from the architecture (post-LayerNorm encoder, erf GELU, absolute positions), not
from ``onnx_bert.py``; float64 throughout, so any disagreement is the graph's.
"""

from __future__ import annotations

import math

import numpy as np


def _norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def bert_hidden(
    weights: dict[str, np.ndarray], config: dict, ids: list[int], mask: list[int] | None = None
) -> np.ndarray:
    """Last hidden state ``[len(ids), hidden]`` of one sequence; ``mask`` 0 hides a position from attention."""
    p = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
    w = {k[len(p) :]: np.asarray(v, np.float64) for k, v in weights.items() if k.startswith(p)}
    heads, eps = config["num_attention_heads"], config.get("layer_norm_eps", 1e-12)
    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
    x = _norm(
        x + w["embeddings.token_type_embeddings.weight"][0],
        w["embeddings.LayerNorm.weight"],
        w["embeddings.LayerNorm.bias"],
        eps,
    )
    d = x.shape[1] // heads
    for i in range(config["num_hidden_layers"]):

        def L(name: str, v: np.ndarray, i: int = i) -> np.ndarray:  # a Linear layer of layer i
            return v @ w[f"encoder.layer.{i}.{name}.weight"].T + w[f"encoder.layer.{i}.{name}.bias"]

        q, k, v = (
            L(f"attention.self.{t}", x).reshape(n, heads, d).transpose(1, 0, 2) for t in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        if mask is not None:
            scores = scores + np.where(np.asarray(mask) > 0, 0.0, -1e9)
        attn = np.exp(scores - scores.max(-1, keepdims=True))
        ctx = (attn / attn.sum(-1, keepdims=True) @ v).transpose(1, 0, 2).reshape(n, -1)
        x = _norm(
            x + L("attention.output.dense", ctx),
            w[f"encoder.layer.{i}.attention.output.LayerNorm.weight"],
            w[f"encoder.layer.{i}.attention.output.LayerNorm.bias"],
            eps,
        )
        h = L("intermediate.dense", x)
        h = 0.5 * h * (1 + np.vectorize(math.erf)(h / math.sqrt(2)))
        x = _norm(
            x + L("output.dense", h),
            w[f"encoder.layer.{i}.output.LayerNorm.weight"],
            w[f"encoder.layer.{i}.output.LayerNorm.bias"],
            eps,
        )
    return x
