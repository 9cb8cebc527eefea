"""Compaction of a compressed index: copying codes against decoding and coding them again.

    python benchmarks/compaction.py            # SciFact by the default encoder (~3 minutes)

The index is written in two adds (the second reuses the first's codec), a tenth of the passages
are deleted, then it is compacted twice from the same state: as colcade does (one codec: the
codes are copied) and the old way (every token decoded and coded again). Reports each one's
time and how many tokens the old way moved to another centroid.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embeddings import load  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402

from colcade import LateIndex, PrecomputedEncoder  # noqa: E402
from colcade.encoders.default import MiniLMEncoder  # noqa: E402


def compacted(path: Path, copy: bool) -> tuple[float, np.ndarray, str]:
    """Seconds to compact the index at ``path``, and the codes and codec it ends with."""
    index = LateIndex.open(path)
    if not copy:  # the old way: every compaction decoded and coded again
        index._store.refit_due = lambda state: True  # type: ignore[method-assign]
    start = time.perf_counter()
    index.compact()
    seconds = time.perf_counter() - start
    (segment,) = index._store.refresh().segments
    codes, codec = np.array(segment.codes), segment.codec.name
    index.close()
    return seconds, codes, codec


def main() -> None:
    encoder = MiniLMEncoder()
    _, passages, _ = load("scifact", encoder)
    tokens = passages.tokens(encoder._keep)
    half = len(tokens) // 2
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks" / ".cache") as tmp:
        base = Path(tmp) / "base"
        index = LateIndex.create(base, encoder=PrecomputedEncoder(dim=384, name="minilm-cached"))
        index.add(ids=passages.ids[:half], tokens=tokens[:half], dense=passages.dense[:half])
        index.add(ids=passages.ids[half:], tokens=tokens[half:], dense=passages.dense[half:])
        names = {s.codec.name for s in index._store.state.segments if s.codec is not None}
        index.delete(passages.ids[::10])
        index.close()
        rows = []
        results = {}
        for copy in (True, False, True, False):  # interleaved, each from a fresh copy of the same state
            work = Path(tmp) / "work"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(base, work)
            seconds, codes, codec = compacted(work, copy)
            assert {codec} == names, "both ways must end with the index's one codec to compare codes"
            results.setdefault(copy, []).append((seconds, codes))
        copied, recoded = results[True][-1][1], results[False][-1][1]
        moved = float(np.mean(copied != recoded))
        for copy, label in ((True, "copy the codes (colcade now)"), (False, "decode and code again (before)")):
            rows.append([label, f"{np.median([s for s, _ in results[copy]]):.1f}"])
    n_tokens = sum(len(t) for t in tokens)
    body = "\n\n".join(
        [
            "## Compacting a compressed index",
            table(["compaction", "seconds (median of 2)"], rows),
            f"SciFact by the default encoder ({len(tokens):,} passages, {n_tokens:,} tokens, d=384), written in two "
            f"adds sharing {len(names)} codec, a tenth of the passages deleted, compacted from the same state. "
            f"Decoding and coding again moved {moved:.1%} of the surviving tokens to another centroid "
            "(a second compaction would move them again); copying keeps every code.",
        ]
    )
    write_section("compaction", body, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
