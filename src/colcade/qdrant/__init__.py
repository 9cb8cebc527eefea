"""colcade on Qdrant: ``QdrantIndex`` has ``LateIndex``'s contract on a Qdrant collection
(a server, a cluster, or local mode), so the retrievers, the CLI and the notebooks run on it.

Needs ``pip install "colcade[qdrant]"``.
"""

from colcade.optional import require

require("qdrant_client", '"colcade[qdrant]"', "the Qdrant backend")

from colcade.qdrant.index import QdrantIndex  # noqa: E402

__all__ = ["QdrantIndex"]
