"""The collection colcade creates in Qdrant and the query that runs its cascade there.

Both are built from ``qdrant_client.models`` alone, so a server, a cluster and local mode get the
same objects (local mode is exact and ignores the HNSW and quantization settings).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from qdrant_client import models

from colcade.encoders import EncodedQuery

DENSE, TOKENS = "dense", "tokens"  # the collection's named vectors
METADATA_KEY = "colcade"  # the collection metadata entry holding the encoder's description
_NAMESPACE = uuid.UUID("9a0ad3c4-52f3-4b5e-9df4-3f0a0c6c1ade")  # colcade ids -> Qdrant point ids


def point_id(id_: str) -> str:
    """Qdrant takes UUIDs or integers as point ids; a colcade id (any string) maps to a UUID5.

    >>> point_id("doc-1") == point_id("doc-1") != point_id("doc-2")
    True
    """
    return str(uuid.uuid5(_NAMESPACE, id_))


def vectors_config(dim: int, dense_dim: int, on_disk: bool = True) -> dict[str, models.VectorParams]:
    """``dense`` with an HNSW graph (stage 1); ``tokens`` a MaxSim multivector without a graph
    (only prefetched candidates are scored: Qdrant's advice for late interaction), its sign
    bits in RAM (stage 2) and its float16 originals on disk (stage 3)."""
    return {
        DENSE: models.VectorParams(size=dense_dim, distance=models.Distance.DOT),
        TOKENS: models.VectorParams(
            size=dim,
            distance=models.Distance.DOT,
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            datatype=models.Datatype.FLOAT16,
            on_disk=on_disk,
            hnsw_config=models.HnswConfigDiff(m=0),
            quantization_config=models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True)),
        ),
    }


def collection(
    info: dict[str, Any], on_disk: bool = True, shard_number: int | None = None, replication_factor: int | None = None
) -> dict[str, Any]:
    """``create_collection``'s arguments for an encoder described by ``info`` (``describe(encoder)``),
    which goes into the collection's metadata so that ``open`` can check it."""
    return {
        "vectors_config": vectors_config(info["dim"], info["dense_dim"], on_disk),
        "shard_number": shard_number,
        "replication_factor": replication_factor,
        "metadata": {METADATA_KEY: info},
    }


@dataclass(frozen=True)
class Widths:
    """How many passages each stage keeps; ``exhaustive`` scores every passage exactly."""

    n_shortlist: int
    n_prefilter: int
    exhaustive: bool = False

    @classmethod
    def of(cls, k: int, n_shortlist: int | None, n_prefilter: int | None, exhaustive: bool) -> Widths:
        """The defaults of a ``LateIndex`` above its full-scan size (Qdrant does not say the
        collection's size for free); the prefilter keeps at most the shortlist. As in a
        ``LateIndex``, a prefilter narrower than ``k`` returns fewer than ``k`` hits.

        >>> Widths.of(10, None, None, False)
        Widths(n_shortlist=2048, n_prefilter=100, exhaustive=False)
        """
        shortlist = n_shortlist if n_shortlist is not None else max(2048, 64 * k)
        prefilter = n_prefilter if n_prefilter is not None else max(100, 10 * k)
        return cls(int(shortlist), int(min(prefilter, shortlist)), exhaustive)


def query(encoded: EncodedQuery, k: int, widths: Widths, filter: models.Filter | None) -> models.QueryRequest:
    """The cascade as one Qdrant query: dense HNSW shortlist -> MaxSim over the tokens' binary
    quantization (no rescoring) -> exact MaxSim over the originals, each stage filtered."""
    tokens = encoded.tokens.tolist()
    exact = models.SearchParams(quantization=models.QuantizationSearchParams(ignore=True))
    if widths.exhaustive:
        return _request(tokens, k, filter, models.SearchParams(exact=True, quantization=exact.quantization))
    shortlist = models.Prefetch(query=encoded.dense.tolist(), using=DENSE, limit=widths.n_shortlist, filter=filter)
    prefilter = models.Prefetch(
        prefetch=shortlist,
        query=tokens,
        using=TOKENS,
        limit=widths.n_prefilter,
        filter=filter,
        params=models.SearchParams(quantization=models.QuantizationSearchParams(ignore=False, rescore=False)),
    )
    return _request(tokens, k, filter, exact, prefetch=prefilter)


def _request(
    tokens: list[Any], k: int, filter: models.Filter | None, params: models.SearchParams, **extra: Any
) -> models.QueryRequest:
    return models.QueryRequest(
        query=tokens, using=TOKENS, limit=k, filter=filter, params=params, with_payload=True, **extra
    )
