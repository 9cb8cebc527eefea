"""An agent that uses a colcade retriever as a tool (langchain.agents.create_agent), offline.

    python examples/langchain_agent.py

The chat model is a fake that asks for the tool once and then answers, so the example runs
anywhere; with a real tool-calling model the code is the same.
"""

from __future__ import annotations

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import create_retriever_tool

from langchain_colcade import ColcadeRetriever


class ScriptedToolModel(GenericFakeChatModel):
    """A fake chat model that accepts tools (it replays scripted messages)."""

    def bind_tools(self, tools, **kwargs):
        return self


def build_agent(model):
    retriever = ColcadeRetriever.from_texts(
        [
            "The Eiffel Tower is 330 metres tall and stands in Paris.",
            "The Golden Gate Bridge spans the Golden Gate strait in San Francisco.",
            "Mount Everest is 8,849 metres high.",
        ],
        metadatas=[{"city": "Paris"}, {"city": "San Francisco"}, {"city": None}],
        k=1,
    )
    tool = create_retriever_tool(retriever, "search_landmarks", "Searches facts about famous landmarks.")
    return create_agent(model, tools=[tool], system_prompt="Use search_landmarks to answer."), tool


if __name__ == "__main__":
    model = ScriptedToolModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[
                        {"name": "search_landmarks", "args": {"query": "height of the Eiffel Tower"}, "id": "call-1"}
                    ],
                ),
                AIMessage(content="The Eiffel Tower is 330 metres tall."),
            ]
        )
    )
    agent, _ = build_agent(model)
    result = agent.invoke({"messages": [HumanMessage("How tall is the Eiffel Tower?")]})
    for message in result["messages"]:
        print(f"{message.type:>6}: {str(message.content)[:100] or message.tool_calls}")
