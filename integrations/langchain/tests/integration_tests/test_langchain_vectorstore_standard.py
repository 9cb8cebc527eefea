"""LangChain's own VectorStore test suite (sync and async) against ColcadeVectorStore."""

import pytest

pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests  # noqa: E402

from langchain_colcade import ColcadeVectorStore  # noqa: E402


class TestColcadeVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, tmp_path):
        store = ColcadeVectorStore(path=tmp_path / "store")  # the embedded default encoder, on disk
        try:
            yield store
        finally:
            store.index.close()
