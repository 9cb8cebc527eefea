"""The kill harness: SIGKILL a writing process at random moments; nothing acknowledged is lost.

A child process (``sharing_worker.py churn``) adds, upserts, deletes, replaces and compacts on
an on-disk index, logging each operation before it starts and after it returns. The harness
kills it at a seeded random moment, opens the index and checks that it equals the state after
the last acknowledged operation, or after the one in flight (which may have committed just
before the kill), passage by passage: ids, versions, texts, and vectors through search.

    python tests/kill_harness.py --kills 200      # writes its counts into RELIABILITY.md
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sharing_worker import apply, encoder, self_score, vectors  # noqa: E402


def _records(log: Path) -> list[dict]:
    lines = log.read_text().splitlines() if log.exists() else []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:  # the kill landed inside a log line: that operation had not returned
            pass
    return out


def observe(path: Path, rng: random.Random) -> dict[str, tuple[int, int]]:
    """The index as {id: (version, group)}, after checking texts and a sample of vectors."""
    from colcade import EncodedQuery, LateIndex
    from colcade.encoders import pool

    with LateIndex.open(path, encoder=encoder()) as index:
        ids = index.ids()
        rows = index.get(ids) if ids else []
        seen = {}
        for r in rows:
            v, g = r["metadata"]["v"], r["metadata"]["group"]
            assert r["text"] == f"{r['id']} v{v}", r
            seen[r["id"]] = (v, g)
        for id_ in rng.sample(ids, min(5, len(ids))):
            q = vectors(id_, seen[id_][0])
            hits = index.search(EncodedQuery(dense=pool(q), tokens=q), k=5, exhaustive=True)
            mine = [h for h in hits if h.id == id_]
            assert mine and abs(mine[0].score - self_score(id_, seen[id_][0])) < 1e-3, (id_, hits)
        assert len(index) == len(ids)
        # The lexical index holds exactly the live passages (its triggers commit with the rows).
        versions = sorted({f"v{v}" for v, _ in seen.values()})
        with index._store.reading() as (state, db):
            keys, _ = index._store.lexical(db, versions, 1 << 30)
            assert sorted(keys.tolist()) == sorted(state.keys[state.live].tolist()), "lexical index out of step"
    return seen


def run(kills: int, seed: int, folder: Path) -> dict[str, int]:
    """Kill a churning writer ``kills`` times; raises AssertionError on any loss or damage."""
    from colcade import LateIndex

    path = folder / "idx"
    LateIndex.create(path, encoder=encoder()).close()
    rng = random.Random(seed)
    model: dict[str, tuple[int, int]] = {}
    counts = {
        "kills": 0,
        "operations_acknowledged": 0,
        "in_flight_committed": 0,
        "in_flight_rolled_back": 0,
        "compactions_acknowledged": 0,
        "passages_checked": 0,
    }
    for k in range(kills):
        log = folder / f"log-{k}.jsonl"
        target = rng.randint(1, 25)  # operations begun before the kill
        with open(folder / f"child-{k}.err", "w") as err:
            child = subprocess.Popen(
                [sys.executable, str(HERE / "sharing_worker.py"), "churn", str(path), str(seed * 10_000 + k), str(log)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            deadline = time.monotonic() + 120
            while child.poll() is None and time.monotonic() < deadline:
                if log.exists() and log.read_text().count('"begin"') >= target:
                    break
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.03))
            child.kill()
            child.wait()
        if child.returncode != -9:
            raise AssertionError(
                f"the writer failed on its own (exit {child.returncode}): "
                f"{(folder / f'child-{k}.err').read_text()[-3000:]}"
            )
        in_flight = None
        for record in _records(log):
            if "ack" in record:
                model = apply(model, record["ack"])
                counts["operations_acknowledged"] += 1
                counts["compactions_acknowledged"] += record["ack"]["op"] == "compact"
                in_flight = None
            else:
                in_flight = record["begin"]
        seen = observe(path, rng)
        if seen != model:
            after = apply(model, in_flight) if in_flight else None
            if seen != after:
                lost = {
                    i: model.get(i) for i in set(model) ^ set(seen) | {i for i in model if model.get(i) != seen.get(i)}
                }
                raise AssertionError(
                    f"kill {k}: the index differs from every acknowledged state "
                    f"(in flight: {in_flight}); differing ids: {dict(list(lost.items())[:10])}"
                )
            counts["in_flight_committed"] += 1
            model = after
        elif in_flight:
            counts["in_flight_rolled_back"] += 1
        counts["kills"] += 1
        counts["passages_checked"] += len(seen)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", type=Path, default=HERE.parent / "RELIABILITY.md")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        counts = run(args.kills, args.seed, Path(tmp))
    counts["seconds"] = round(time.perf_counter() - started)
    print(json.dumps(counts, indent=2))
    if args.write.is_file():
        text = args.write.read_text()
        table = "\n".join(f"| {k.replace('_', ' ')} | {v} |" for k, v in counts.items())
        block = (
            f"<!-- kills -->\n`python tests/kill_harness.py --kills {args.kills} --seed {args.seed}`:\n\n"
            f"| count | value |\n|---|---|\n{table}\n<!-- /kills -->"
        )
        args.write.write_text(re.sub(r"<!-- kills -->.*<!-- /kills -->", lambda _: block, text, flags=re.S))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
