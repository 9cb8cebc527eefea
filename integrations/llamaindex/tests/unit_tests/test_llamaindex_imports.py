"""The public names of the LlamaIndex packages, pinned."""

from llama_index.postprocessor import colcade_rerank
from llama_index.retrievers import colcade


def test_all_imports():
    assert sorted(colcade.__all__) == ["ColcadeIndex", "ColcadeRerank", "ColcadeRetriever", "to_colcade_filter"]
    assert colcade_rerank.__all__ == ["ColcadeRerank"]
