"""Backbones colcade's onnxruntime graphs do not build (rotary XLM-RoBERTa, a model's own code, any
other architecture transformers' ``AutoModel`` loads) through torch (``pip install "colcade[torch]"``),
on CUDA where torch has it; ``backend="torch"`` also runs the ones the graphs do build.

The callable has the ONNX session's shape: ``(input_ids, attention_mask)`` int64 ``[b, l]`` ->
float32 ``[b, l, out]``, the last hidden state through the checkpoint's projection.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from colcade.errors import EncoderUnavailableError
from colcade.optional import require

INSTALL = '"colcade[torch]"'


def _modules(purpose: str) -> tuple[Any, Any]:
    torch = require("torch", INSTALL, purpose, EncoderUnavailableError)
    transformers = require("transformers", INSTALL, purpose, EncoderUnavailableError)
    return torch, transformers


def check_config(path: Path, names: list[str] | None, trust_remote_code: bool, purpose: str) -> None:
    """transformers knows this checkpoint's architecture and ``names`` (the weights file's tensor
    names, where known) hold every weight that architecture reads: checked when an encoder is
    made, on torch's meta device (no memory, no time), so a bad checkpoint is refused by name."""
    torch, transformers = _modules(purpose)
    try:
        config = transformers.AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = transformers.AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as exc:  # unknown model_type, custom code refused or unreachable
        hint = "" if trust_remote_code else " (a model with its own code needs trust_remote_code=True)"
        raise EncoderUnavailableError(f"transformers cannot load {path}: {exc}{hint}") from exc
    if names is None:
        return
    prefix = f"{model.base_model_prefix}."
    have = {n[len(prefix) :] if n.startswith(prefix) else n for n in names}
    missing = sorted(set(model.state_dict()) - have)
    if missing:
        shown = ", ".join(repr(m) for m in missing[:3])
        raise EncoderUnavailableError(
            f"{path} lacks {len(missing)} of the weights its {config.model_type!r} model reads ({shown}...): "
            "weights of another architecture, or saved under other names"
        )


def resolve_device(device: str | None) -> str:
    """``device`` or, when None, ``"cuda"`` where torch sees a GPU, else ``"cpu"``."""
    torch, _ = _modules("the torch backend")
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise EncoderUnavailableError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EncoderUnavailableError(f"device={device!r}, but this torch sees no CUDA GPU: use device='cpu'")
    return device


class TorchBackbone:
    """A checkpoint's transformer on torch, loaded on first use (once, whichever thread gets there first).

    float32 on the CPU; on a GPU half precision (the checkpoint's bfloat16 where it is one, else
    float16), which is what GPU users run these models in. ``projection`` ``[out, hidden]`` and
    ``bias`` ``[out]`` map the hidden state, in float32.
    """

    def __init__(
        self,
        path: Path,
        projection: np.ndarray,
        bias: np.ndarray | None,
        device: str | None = None,
        threads: int | None = None,
        trust_remote_code: bool = False,
        bfloat16: bool = False,
    ) -> None:
        self.path, self.trust_remote_code, self.threads = path, trust_remote_code, threads
        self.device = resolve_device(device)
        self._projection, self._bias, self._bfloat16 = projection, bias, bfloat16
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        torch, transformers = _modules("the torch backend")
        if self.threads:
            torch.set_num_threads(self.threads)
        dtype = torch.float32
        if self.device != "cpu":
            dtype = torch.bfloat16 if self._bfloat16 else torch.float16
        verbosity = transformers.logging.get_verbosity()
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.logging.set_verbosity_error()  # colbert-ai's `linear` is read apart: not a warning
        transformers.utils.logging.disable_progress_bar()  # a bar per load, even of a tiny model
        try:
            model = transformers.AutoModel.from_pretrained(
                str(self.path), dtype=dtype, trust_remote_code=self.trust_remote_code
            )
        finally:
            transformers.logging.set_verbosity(verbosity)
            if bars:
                transformers.utils.logging.enable_progress_bar()
        self._weight = torch.from_numpy(np.ascontiguousarray(self._projection, np.float32)).to(self.device)
        self._b = None if self._bias is None else torch.from_numpy(np.asarray(self._bias, np.float32)).to(self.device)
        return model.eval().to(self.device)

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        torch, _ = _modules("the torch backend")
        with torch.inference_mode():
            out = self._model(
                input_ids=torch.from_numpy(ids).to(self.device), attention_mask=torch.from_numpy(mask).to(self.device)
            )
            hidden = out.last_hidden_state.float() @ self._weight.T
            if self._b is not None:
                hidden = hidden + self._b
            return np.asarray(hidden.cpu().numpy(), np.float32)
