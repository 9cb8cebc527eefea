"""The retriever inside LlamaIndex: a query engine and a tool, from the example script."""

import runpy
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"


def test_query_engine_and_tool_example():
    example = runpy.run_path(str(EXAMPLES / "llamaindex_query_engine.py"))
    retriever, engine, tool = example["build"]()
    response = engine.query("What does late interaction keep?")
    assert [n.node.node_id for n in response.source_nodes] == ["colbert"]  # reranked to the best one
    assert str(response)  # MockLLM produced text from the retrieved context
    assert "MaxSim" in tool.call("MaxSim").content
