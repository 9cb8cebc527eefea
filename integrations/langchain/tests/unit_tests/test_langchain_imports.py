"""The public names of langchain_colcade, pinned: adding or removing one is a decision."""

import pytest

import langchain_colcade


@pytest.fixture(autouse=True)
def _no_network():
    """Unit tests run with the network off (LangChain's convention); the event loop keeps unix sockets."""
    pytest_socket = pytest.importorskip("pytest_socket")
    pytest_socket.disable_socket(allow_unix_socket=True)
    yield
    pytest_socket.enable_socket()


EXPECTED = ["ColcadeReranker", "ColcadeRetriever", "rag_chain"]


def test_all_imports():
    assert sorted(langchain_colcade.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(langchain_colcade, name) is not None


def test_no_network_in_unit_tests():
    import socket

    with pytest.raises(Exception, match="[Ss]ocket"):
        socket.create_connection(("127.0.0.1", 9))
