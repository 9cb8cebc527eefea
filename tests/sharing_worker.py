"""Child processes for the multi-process and kill tests: real processes writing one on-disk index.

Every passage's vectors are a function of its id and version (``vectors``), and its text and
metadata name both, so any process can check that a hit's id, text, metadata and score belong
to one passage. ``python tests/sharing_worker.py ROLE INDEX SEED [LOG]``:

- ``churn``: random add / upsert / delete / replace / compact forever, logging each operation
  as ``begin`` (before) and ``ack`` (after it returned) lines to LOG, fsynced;
- ``adder``: adds ``SEED``-named passages in batches of 10 until told to stop (200 passages);
- ``reader``: searches until the index holds ``SEED`` passages, checking every hit.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script

DIM = 16


def vectors(id_: str, version: int) -> np.ndarray:
    """3-8 unit token vectors, fixed by (id, version)."""
    seed = int.from_bytes(hashlib.blake2b(f"{id_}@{version}".encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((int(rng.integers(3, 9)), DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def self_score(id_: str, version: int) -> float:
    v = vectors(id_, version).astype(np.float16).astype(np.float32)
    return float((v @ v.T).max(axis=1).sum())


def encoder():
    from colcade import PrecomputedEncoder

    return PrecomputedEncoder(dim=DIM, name="sharing-test")


def passages(ids: list[str], versions: list[int] | int, group: int) -> dict:
    """Keyword arguments of ``add`` / ``upsert`` / ``replace`` for these passages."""
    versions = [versions] * len(ids) if isinstance(versions, int) else versions
    return {
        "texts": [f"{i} v{v}" for i, v in zip(ids, versions)],
        "ids": ids,
        "metadatas": [{"v": v, "group": group} for v in versions],
        "tokens": [vectors(i, v) for i, v in zip(ids, versions)],
    }


def check_hit(hit, query_tokens: np.ndarray) -> None:
    """A hit's id, text, metadata and score must all come from the same passage."""
    version = hit.metadata["v"]
    assert hit.text == f"{hit.id} v{version}", (hit.id, hit.text, hit.metadata)
    mine = vectors(hit.id, version).astype(np.float16).astype(np.float32)
    want = float((query_tokens @ mine.T).max(axis=1).sum())
    assert abs(hit.score - want) < 1e-3, (hit.id, hit.score, want)


def _log(f, record: dict) -> None:
    f.write(json.dumps(record) + "\n")
    f.flush()
    os.fsync(f.fileno())


def churn(path: str, seed: int, log_path: str) -> None:
    from colcade import LateIndex

    rng = random.Random(seed)
    index = LateIndex.open(path, encoder=encoder())
    with open(log_path, "a") as log:
        for step in range(10_000):
            live = [i for i in index.ids() if i.startswith("s")]  # its own: others may write too
            versions = {r["id"]: r["metadata"]["v"] for r in index.get(live)} if live else {}
            op = rng.choices(["add", "upsert", "delete", "replace", "compact"], [5, 3, 2, 2, 1])[0]
            if op in ("upsert", "delete") and not live:
                op = "add"
            group = rng.randrange(4)
            if op == "add":
                ids = [f"s{seed}-{step}-{j}" for j in range(rng.randint(1, 30))]
                record = {"op": op, "ids": ids, "group": group}
            elif op == "upsert":
                ids = rng.sample(live, min(len(live), rng.randint(1, 10)))
                record = {"op": op, "ids": ids, "versions": [versions[i] + 1 for i in ids], "group": group}
            elif op == "delete":
                record = {"op": op, "ids": rng.sample(live, min(len(live), rng.randint(1, 5)))}
            elif op == "replace":
                record = {"op": op, "group": group, "ids": [f"s{seed}-{step}-r{j}" for j in range(rng.randint(0, 5))]}
            else:
                record = {"op": op}
            _log(log, {"begin": record})
            if op == "add":
                index.add(**passages(ids, 0, group))
            elif op == "upsert":
                index.upsert(**passages(record["ids"], record["versions"], group))
            elif op == "delete":
                index.delete(record["ids"])
            elif op == "replace":
                index.replace({"group": group}, **passages(record["ids"], 0, group))
            else:
                index.compact()
            _log(log, {"ack": record})


def apply(model: dict[str, tuple[int, int]], record: dict) -> dict[str, tuple[int, int]]:
    """The expected {id: (version, group)} after ``record``."""
    model = dict(model)
    op = record["op"]
    if op == "add":
        model.update({i: (0, record["group"]) for i in record["ids"]})
    elif op == "upsert":
        model.update({i: (v, record["group"]) for i, v in zip(record["ids"], record["versions"])})
    elif op == "delete":
        for i in record["ids"]:
            model.pop(i)
    elif op == "replace":
        model = {i: vg for i, vg in model.items() if vg[1] != record["group"]}
        model.update({i: (0, record["group"]) for i in record["ids"]})
    return model


def adder(path: str, name: str, total: int = 200) -> None:
    from colcade import LateIndex

    index = LateIndex.open(path, encoder=encoder(), lock_timeout=120)
    for start in range(0, total, 10):
        index.add(**passages([f"{name}-{i}" for i in range(start, start + 10)], 0, 0))


def reader(path: str, until: int) -> None:
    """Search until ``until`` passages are visible; every hit checked; prints the searches run."""
    from colcade import EncodedQuery, LateIndex
    from colcade.encoders import pool

    index = LateIndex.open(path, encoder=encoder())
    rng = np.random.default_rng(0)
    searches, deadline = 0, time.monotonic() + 120
    while time.monotonic() < deadline:
        q = rng.standard_normal((4, DIM)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        flt = {"group": int(rng.integers(2))} if searches % 3 == 0 else None
        hits = index.search(EncodedQuery(dense=pool(q), tokens=q), k=5, filter=flt)
        for hit in hits:
            check_hit(hit, q)
            assert flt is None or hit.metadata["group"] == flt["group"]
        searches += 1
        index.stats()  # must not fail while another process compacts
        if len(index) >= until:
            print(json.dumps({"searches": searches, "seen": len(index)}))
            return
    raise SystemExit(f"reader never saw {until} passages (saw {len(index)})")


if __name__ == "__main__":
    role, index_path, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    if role == "churn":
        churn(index_path, int(arg), sys.argv[4])
    elif role == "adder":
        adder(index_path, arg)
    elif role == "reader":
        reader(index_path, int(arg))
