"""An ONNX graph written op by op, the pieces the encoder builders share (onnx_bert, onnx_modernbert).

Every graph has the same signature: ``input_ids`` and ``attention_mask`` int64 ``[batch, length]``
in, ``hidden`` float32 ``[batch, length, width]`` out. ``int8`` graphs run every weight matrix
product in 8-bit integers (the VNNI / AMX kernels): weights per output channel, activations
per token, so a text's vectors do not depend on what it is batched with (onnxruntime's own
dynamic quantization scales a whole batch at once). Only where ``exact_int8()``: x86 CPUs
without VNNI add u8 x s8 products in pairs into int16, which saturates (255 x 127 x 2 > 32767).
"""

from __future__ import annotations

import functools
import math
from itertools import count
from typing import Any

import numpy as np


@functools.cache  # the CPU does not change: read /proc/cpuinfo once a process
def exact_int8() -> bool:
    """Whether this CPU's u8 x s8 products accumulate without saturating: x86 with VNNI or AMX
    (``/proc/cpuinfo`` flags), or 64-bit ARM with dot-product instructions."""
    import platform
    from pathlib import Path

    machine = platform.machine().lower()
    if machine == "arm64":  # Apple silicon: every model has the dot-product instructions
        return True
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux: no way to know, so no int8
        return False
    wanted = {"asimddp"} if machine == "aarch64" else {"avx512_vnni", "avx_vnni", "amx_int8"}
    return bool(flags & wanted)


class Graph:
    """Nodes and initializers of one model; each method adds ops and returns its output's name."""

    def __init__(self, int8: bool = False) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self._helper, self._numpy_helper, self.types = helper, numpy_helper, TensorProto
        self.int8 = int8
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._counter = count()
        shared = {
            "f1": np.array(1.0, np.float32),
            "half": np.array(0.5, np.float32),
            "sqrt2": np.array(math.sqrt(2.0), np.float32),
            "neg": np.array(-1e9, np.float32),
        }
        if int8:  # onnxruntime warns of (and drops) initializers no node reads
            shared.update(
                tiny=np.array(1e-12, np.float32),
                i8max=np.array(127.0, np.float32),
                u8mid=np.array(128.0, np.float32),
                zero128=np.array(128, np.uint8),
            )
        for name, value in shared.items():
            self.const(name, value)

    def const(self, name: str, value: Any) -> str:
        self.inits.append(self._numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, kind: str, inputs: list[str], **attrs: Any) -> str:
        out = f"{kind}_{next(self._counter)}"
        self.nodes.append(self._helper.make_node(kind, inputs, [out], **attrs))
        return out

    def split(self, x: str, sizes: list[int]) -> list[str]:
        """``x`` cut along its last axis into pieces of ``sizes``."""
        n = next(self._counter)
        outs = [f"Split_{n}_{j}" for j in range(len(sizes))]
        sizes_name = self.const(f"g_split{n}", np.array(sizes, np.int64))
        self.nodes.append(self._helper.make_node("Split", [x, sizes_name], outs, axis=-1))
        return outs

    def length(self) -> str:
        """The sequence length, as a 1-element int64 tensor."""
        one, two = self.const("g_i1", np.array([1], np.int64)), self.const("g_i2", np.array([2], np.int64))
        return self.op("Slice", [self.op("Shape", ["input_ids"]), one, two])

    def padding_bias(self) -> str:
        """-1e9 where the attention mask is 0, as ``[b, 1, 1, l]`` (added to the scores before the softmax)."""
        axes = self.const("g_axes12", np.array([1, 2], np.int64))
        keep = self.op("Cast", ["attention_mask"], to=self.types.FLOAT)
        return self.op("Unsqueeze", [self.op("Mul", [self.op("Sub", ["f1", keep]), "neg"]), axes])

    def layer_norm(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray | None, eps: float) -> str:
        bias = np.zeros_like(weight) if bias is None else bias
        inputs = [x, self.const(f"{name}.w", weight), self.const(f"{name}.b", bias)]
        return self.op("LayerNormalization", inputs, epsilon=eps, axis=-1)

    def matmul(self, x: str, name: str, weight_t: np.ndarray) -> str:
        """``x @ weight_t`` (``weight_t`` ``[in, out]``), in float32 or, for int8 graphs, integers."""
        weight_t = np.ascontiguousarray(weight_t, np.float32)
        if not self.int8:
            return self.op("MatMul", [x, self.const(name, weight_t)])
        scale = (np.maximum(np.abs(weight_t).max(axis=0), 1e-12) / 127).astype(np.float32)
        weight_q = np.clip(np.round(weight_t / scale), -127, 127).astype(np.int8)
        # Each token symmetric by its largest magnitude, shifted to uint8 around 128 (the u8 x s8 kernels).
        largest = self.op("ReduceMax", [self.op("Abs", [x])], axes=[-1], keepdims=1)
        row = self.op("Div", [self.op("Max", [largest, "tiny"]), "i8max"])
        shifted = self.op("Add", [self.op("Round", [self.op("Div", [x, row])]), "u8mid"])
        x_q = self.op("Cast", [shifted], to=self.types.UINT8)
        y = self.op("MatMulInteger", [x_q, self.const(f"{name}.q", weight_q), "zero128"])
        y = self.op("Mul", [self.op("Cast", [y], to=self.types.FLOAT), row])
        return self.op("Mul", [y, self.const(f"{name}.s", scale)])

    def linear(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray | None) -> str:
        """A Linear layer: ``x W^T + b``, ``weight`` stored ``[out, in]`` as torch stores it."""
        y = self.matmul(x, f"{name}.wt", np.asarray(weight, np.float32).T)
        return y if bias is None else self.op("Add", [y, self.const(f"{name}.b", np.asarray(bias, np.float32))])

    def gelu(self, x: str) -> str:
        """The exact (erf) GELU."""
        erf = self.op("Erf", [self.op("Div", [x, "sqrt2"])])
        return self.op("Mul", [self.op("Mul", [x, self.op("Add", [erf, "f1"])]), "half"])

    def attention(self, q: str, k: str, v: str, bias: str, head_dim: int) -> str:
        """softmax(q k^T / sqrt(d) + bias) v over ``[b, heads, l, d]`` tensors."""
        scale = self.const(f"g_scale{next(self._counter)}", np.array(1.0 / math.sqrt(head_dim), np.float32))
        scores = self.op("MatMul", [q, self.op("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = self.op("Add", [self.op("Mul", [scores, scale]), bias])
        return self.op("MatMul", [self.op("Softmax", [scores], axis=-1), v])

    def finish(self, x: str, width: int, name: str) -> bytes:
        """The serialized, checked model whose output ``hidden`` is ``x`` (``width`` wide)."""
        import onnx

        helper, types = self._helper, self.types
        self.nodes.append(helper.make_node("Identity", [x], ["hidden"]))
        graph = helper.make_graph(
            self.nodes,
            name,
            [
                helper.make_tensor_value_info(n, types.INT64, ["batch", "length"])
                for n in ("input_ids", "attention_mask")
            ],
            [helper.make_tensor_value_info("hidden", types.FLOAT, ["batch", "length", width])],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        onnx.checker.check_model(model)
        return bytes(model.SerializeToString())
