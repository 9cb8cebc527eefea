"""The public names of langchain_colcade, pinned: adding or removing one is a decision."""

import pytest
from offline import _no_network  # noqa: E402, F401  (autouse: no network in unit tests)

import langchain_colcade

EXPECTED = ["ColcadeReranker", "ColcadeRetriever", "ColcadeTranslator", "ColcadeVectorStore", "rag_chain"]


def test_all_imports():
    assert sorted(langchain_colcade.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(langchain_colcade, name) is not None


def test_no_network_in_unit_tests():
    import socket

    with pytest.raises(Exception, match="[Ss]ocket"):
        socket.create_connection(("127.0.0.1", 9))
