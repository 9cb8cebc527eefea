"""Imported by every unit test module: LangChain's convention is that unit tests run with the network off.

Not a conftest.py: the repository's tests import helpers from a module named ``conftest``, and a
second one here would shadow it when both suites run in one pytest session.
"""

import pytest


@pytest.fixture(autouse=True)
def _no_network():
    """Unit tests run with the network off (LangChain's convention); the event loop keeps unix sockets."""
    pytest_socket = pytest.importorskip("pytest_socket")
    pytest_socket.disable_socket(allow_unix_socket=True)
    yield
    pytest_socket.enable_socket()
