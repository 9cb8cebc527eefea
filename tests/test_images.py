"""Page images end to end: fastembed's multimodal class (the real one) runs a tiny stand-in ColPali
(examples/tiny_colpali.py: ColPali's inputs, patch grid and outputs, untrained) over pages drawn
here, so the flow is tested offline; a colour's name embeds as a patch of that colour does."""

import sys
from pathlib import Path

import numpy as np
import pytest

from colcade import InvalidInputError, LateIndex
from colcade.encoders.precomputed import PrecomputedEncoder

pytest.importorskip("fastembed")
Image = pytest.importorskip("PIL.Image")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import tiny_colpali  # noqa: E402

from colcade.encoders.multimodal import FastEmbedMultimodalEncoder  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_colpali.build(tmp_path_factory.mktemp("tiny-colpali"))


def page(path, colour, seed):
    """A white page with grey text-like lines and one block of ``colour`` somewhere on it."""
    rng = np.random.default_rng(seed)
    pixels = np.full((560, 420, 3), 255, np.uint8)
    for y in range(40, 520, 24):
        pixels[y : y + 8, 30 : int(rng.integers(150, 390))] = 90
    y, x = int(rng.integers(0, 380)), int(rng.integers(0, 240))
    pixels[y : y + 150, x : x + 150] = tiny_colpali.COLOURS[colour]
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    colours = [list(tiny_colpali.COLOURS)[i % 4] for i in range(12)]
    return [page(folder / f"p{i}.png", c, i) for i, c in enumerate(colours)], colours


def test_pages_are_indexed_from_images_and_found_by_text(tmp_path, model, pages):
    paths, colours = pages
    encoder = FastEmbedMultimodalEncoder(specific_model_path=str(model), device="cpu")
    assert encoder.dim == 128 and encoder.runtime == "onnxruntime (cpu)"
    encoded = encoder.encode_images(paths[:2])
    assert [t.shape for t in encoded.tokens] == [(1030, 128)] * 2  # ColPali's 1,024 patches + 6 prompt tokens
    assert np.allclose(np.linalg.norm(encoded.tokens[0], axis=1), 1, atol=1e-5)
    with LateIndex.create(tmp_path / "pages", encoder=encoder) as index:
        ids = index.add(
            texts=[f"page {i}" for i in range(12)],
            images=paths,
            ids=[f"p{i}" for i in range(12)],
            metadatas=[{"colour": c, "page": i} for i, c in enumerate(colours)],
        )
        assert ids == [f"p{i}" for i in range(12)]
        hits = index.search("red", k=3)
        assert [h.metadata["colour"] for h in hits] == ["red"] * 3
        assert all(h.text == f"page {h.metadata['page']}" and h.id == f"p{h.metadata['page']}" for h in hits)
        exact = index.search("blue", k=3, exhaustive=True)
        assert [h.id for h in index.search("blue", k=3)] == [h.id for h in exact]
        filtered = index.search("green", k=3, filter={"page": {"$gte": 6}})
        assert filtered[0].id == "p9" and all(h.metadata["page"] >= 6 for h in filtered)  # the one green page there
    with LateIndex.open(tmp_path / "pages") as index:  # the encoder comes back from the manifest
        assert [h.id for h in index.search("blue", k=3, exhaustive=True)] == [h.id for h in exact]
        index.upsert(images=[paths[1]], ids=["p0"], metadatas=[{"colour": colours[1], "page": 0}])
        assert index.get(["p0"])[0]["metadata"]["colour"] == colours[1]


def test_images_are_refused_clearly(tmp_path, model, pages):
    paths, _ = pages
    text_only = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=128))
    with pytest.raises(InvalidInputError, match="does not embed images"):
        text_only.add(images=paths[:1])
    index = LateIndex.in_memory(encoder=FastEmbedMultimodalEncoder(specific_model_path=str(model), device="cpu"))
    with pytest.raises(InvalidInputError, match="images or tokens, not both"):
        index.add(images=paths[:1], tokens=[np.ones((2, 128))])
    with pytest.raises(InvalidInputError, match="is not a file"):
        index.add(images=[tmp_path / "missing.png"])
    for one in (str(paths[0]), paths[0], Image.open(paths[0])):
        with pytest.raises(InvalidInputError, match="not one image"):
            index.add(images=one)
    with pytest.raises(InvalidInputError, match="got 2 texts but 1 images"):
        index.add(texts=["a", "b"], images=paths[:1])
    assert len(index) == 0  # nothing half-written


@pytest.mark.filterwarnings("ignore:Local mode performs exact")
@pytest.mark.parametrize("backend", ["late", "qdrant"])
def test_a_model_you_run_yourself_embeds_images_through_image_fn(tmp_path, pages, backend):
    # The ColQwen2-on-transformers path of the README, with a numpy model in its place: pixels
    # (8x8 cells of the page) and colour names mapped by the same random projection.
    paths, colours = pages
    project = np.random.default_rng(0).standard_normal((3, 16))

    def cells(path):
        return np.asarray(Image.open(path).convert("RGB").resize((8, 8)), np.float64).reshape(-1, 3) / 255 - 0.5

    encoder = PrecomputedEncoder(
        dim=16,
        name="numpy-pages",
        image_fn=lambda images: [cells(p) @ project for p in images],
        query_fn=lambda q: (np.array(tiny_colpali.COLOURS[q], np.float64)[None] / 255 - 0.5) @ project,
    )
    if backend == "qdrant":  # the same contract on Qdrant
        qdrant = pytest.importorskip("colcade.qdrant")
        index = qdrant.QdrantIndex.create(":memory:", "pages", encoder)
    else:
        index = LateIndex.in_memory(encoder=encoder)
    index.add(images=paths, ids=[f"p{i}" for i in range(12)], metadatas=[{"colour": c} for c in colours])
    assert index.search("yellow", k=1)[0].metadata["colour"] == "yellow"
    calls = []

    def counting(images):
        calls.append(len(images))
        return [cells(p) for p in images]

    small = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=3, image_fn=counting))
    small.add(images=paths[:10], batch_size=4)
    assert calls == [4, 4, 2]  # the model gets batch_size images at a time
    assert len(PrecomputedEncoder(dim=16, image_fn=lambda images: []).encode_images([]).tokens) == 0
    with pytest.raises(InvalidInputError, match="returned 1 matrices for 2 images"):
        PrecomputedEncoder(dim=16, image_fn=lambda images: [np.ones((2, 16))]).encode_images(paths[:2])
