"""Shared by the unit tests: LangChain's convention is that they run with the network off."""

import pytest


@pytest.fixture(autouse=True)
def _no_network():
    """Unit tests run with the network off (LangChain's convention); the event loop keeps unix sockets."""
    pytest_socket = pytest.importorskip("pytest_socket")
    pytest_socket.disable_socket(allow_unix_socket=True)
    yield
    pytest_socket.enable_socket()
