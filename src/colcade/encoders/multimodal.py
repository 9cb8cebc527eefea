"""Page images (ColPali, ColModernVBERT) through fastembed's ``LateInteractionMultimodalEmbedding``
(``pip install "colcade[fastembed]"``): pages are embedded as images, one vector per patch;
queries as text. ``LateIndex.add(images=...)`` indexes pages with it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from colcade.encoders.base import Encoded, EncodedQuery, check_texts, fingerprint_of, normalize, pool, sha256_file
from colcade.encoders.onnx_bert import providers
from colcade.errors import EncoderUnavailableError, InvalidInputError
from colcade.optional import require

Image = Any  # a path (str or Path) or a PIL image


class FastEmbedMultimodalEncoder:
    """A fastembed multimodal late-interaction model (``"Qdrant/colpali-v1.3-fp16"``,
    ``"Qdrant/colmodernvbert"``) as a colcade encoder that also embeds images.

    ``encode_images(pages)`` gives one vector per image patch (ColPali: 1,030 of 128
    dimensions a page); ``encode_query(text)`` the query's; ``encode_documents(texts)`` embeds
    texts as the model embeds queries (for text passages beside the pages). ``device``:
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (default: a GPU where onnxruntime has CUDA).
    ``specific_model_path``: a folder you already have (offline); otherwise the model downloads
    once from the Hugging Face hub.

    >>> enc = FastEmbedMultimodalEncoder("Qdrant/colpali-v1.3-fp16")      # doctest: +SKIP
    >>> enc.encode_images(["page1.png"]).tokens[0].shape                   # doctest: +SKIP
    (1030, 128)
    """

    kind = "fastembed-multimodal"
    embeds_images = True

    def __init__(
        self,
        model_name: str = "Qdrant/colpali-v1.3-fp16",
        cache_dir: str | None = None,
        threads: int | None = None,
        specific_model_path: str | None = None,
        batch_size: int = 4,
        device: str | None = None,
    ) -> None:
        fastembed = require("fastembed", '"colcade[fastembed]"', "FastEmbedMultimodalEncoder", EncoderUnavailableError)
        on_gpu = providers(device)[0] == "CUDAExecutionProvider"
        options: dict[str, Any] = {"cuda": on_gpu}
        if on_gpu and device and ":" in device:
            options["device_ids"] = [int(device.split(":")[1])]
        try:
            self.model = fastembed.LateInteractionMultimodalEmbedding(
                model_name, cache_dir=cache_dir, threads=threads, specific_model_path=specific_model_path, **options
            )
        except Exception as exc:  # offline without a cached model, unknown name...
            raise EncoderUnavailableError(
                f"fastembed could not load {model_name!r} ({exc}). It downloads from the Hugging Face hub "
                "once; offline, pass specific_model_path= to a model folder."
            ) from exc
        self.name = model_name
        self.batch_size = batch_size
        self.runtime = f"onnxruntime ({'cuda' if on_gpu else 'cpu'})"
        self.dim = self.dense_dim = int(np.asarray(next(iter(self.model.embed_text(["dimension probe"])))).shape[-1])
        self.config = {"model_name": model_name, "specific_model_path": specific_model_path}

    @functools.cached_property
    def fingerprint(self) -> str:
        inner = getattr(self.model, "model", None)
        folder = getattr(inner, "_model_dir", None)
        files = sorted(Path(folder).rglob("*.onnx*")) if folder else []
        return fingerprint_of("fastembed-multimodal", self.name, self.dim, *(sha256_file(f) for f in files))

    def encode_images(self, images: Sequence[Image]) -> Encoded:
        """Vectors of page images (paths or PIL images): one a patch, the dense one their mean."""
        images = list(images)
        for i, image in enumerate(images):
            if isinstance(image, (str, Path)):
                if not Path(image).is_file():
                    raise InvalidInputError(f"image {i} ({image}) is not a file")
            elif not hasattr(image, "convert"):
                raise InvalidInputError(f"image {i} is a {type(image).__name__}; give a path or a PIL image")
        if not images:
            return Encoded(dense=np.zeros((0, self.dim), np.float32), tokens=[])
        embedded = self.model.embed_image([str(x) if isinstance(x, Path) else x for x in images], self.batch_size)
        tokens = [normalize(np.asarray(t).reshape(-1, self.dim)) for t in embedded]
        return Encoded(dense=np.stack([pool(t) for t in tokens]), tokens=tokens)

    def encode_documents(self, texts: Sequence[str]) -> Encoded:
        """Text passages, embedded as the model embeds text (its query side)."""
        check_texts(texts)
        tokens = [normalize(np.asarray(t)) for t in self.model.embed_text(list(texts), self.batch_size)]
        dense = np.stack([pool(t) for t in tokens]) if tokens else np.zeros((0, self.dim), np.float32)
        return Encoded(dense=dense, tokens=tokens)

    def encode_query(self, text: str) -> EncodedQuery:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("the query is empty; give it content")
        tokens = normalize(np.asarray(next(iter(self.model.embed_text([text])))))
        return EncodedQuery(dense=pool(tokens), tokens=tokens)
