"""langchain_colcade inside LangChain: the standard retriever suite, an LCEL chain and an agent."""

import runpy
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.language_models.fake_chat_models import FakeListChatModel  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage  # noqa: E402
from langchain_tests.integration_tests import RetrieversIntegrationTests  # noqa: E402

from colcade import LateIndex  # noqa: E402
from langchain_colcade import ColcadeRetriever, rag_chain  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"
DOCS = [
    Document(
        id="violin",
        page_content="The violin is a bowed string instrument with four strings.",
        metadata={"kind": "music"},
    ),
    Document(
        id="cello",
        page_content="The cello is a larger, lower string instrument than the violin.",
        metadata={"kind": "music"},
    ),
    Document(id="solar", page_content="Solar panels convert sunlight into electricity.", metadata={"kind": "energy"}),
]


@pytest.fixture(scope="module")
def shared_index():
    index = LateIndex.in_memory()
    index.add([d.page_content for d in DOCS], ids=[d.id for d in DOCS], metadatas=[d.metadata for d in DOCS])
    return index


class TestStandardSuite(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _index(self, shared_index):
        self._shared = shared_index

    @property
    def retriever_constructor(self):
        return ColcadeRetriever

    @property
    def retriever_constructor_params(self):
        return {"index": self._shared}

    @property
    def retriever_query_example(self):
        return "string instruments"


def test_rag_chain_cites_sources():
    retriever = ColcadeRetriever.from_documents(DOCS, k=1)
    chain = rag_chain(retriever, FakeListChatModel(responses=["Four [violin]"]))
    assert chain.invoke("How many strings does a violin have?") == "Four [violin]"


def test_lcel_rag_chain_example():
    example = runpy.run_path(str(EXAMPLES / "langchain_rag_chain.py"))
    seen = {}

    def spy(prompt_value):  # stands where the LLM goes: records the prompt it would receive
        seen["prompt"] = prompt_value.to_string()
        return seen["prompt"]

    llm = FakeListChatModel(responses=["It sums best matches."])
    chain, _ = example["build_chain"](llm)
    assert chain.invoke("How does MaxSim score a passage?") == "It sums best matches."
    prompt_chain, _ = example["build_chain"](spy)  # the prompt the LLM would get holds the retrieved passage
    prompt_chain.invoke("How does MaxSim score a passage?")
    assert "best dot product" in seen["prompt"]


def test_agent_with_the_retriever_as_a_tool():
    example = runpy.run_path(str(EXAMPLES / "langchain_agent.py"))
    model = example["ScriptedToolModel"](
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[{"name": "search_landmarks", "args": {"query": "bridge in San Francisco"}, "id": "c1"}],
                ),
                AIMessage(content="The Golden Gate Bridge."),
            ]
        )
    )
    agent, tool = example["build_agent"](model)
    messages = agent.invoke({"messages": [HumanMessage("Which bridge is in San Francisco?")]})["messages"]
    tool_output = [m for m in messages if m.type == "tool"]
    assert len(tool_output) == 1 and "Golden Gate" in tool_output[0].content
    assert messages[-1].content == "The Golden Gate Bridge."
    assert "Everest" in tool.invoke({"query": "highest mountain"})
