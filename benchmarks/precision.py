"""The default encoder's arithmetic: float32 matrix products against 8-bit integer ones.

``MiniLMEncoder(precision="int8")`` runs every weight matrix product of the same graph in 8-bit
integers (weights per output channel, activations per token: onnx_bert.build_bert), which this
CPU's VNNI / AMX kernels run faster. This measures what that costs and buys: exhaustive MaxSim
nDCG@10 on each shared collection (default token selection), per-token cosine between the two,
and encoding speed side by side. The default follows the target fixed beforehand: int8 where it
keeps nDCG@10 within 0.005 of float32 on every collection.

    python benchmarks/precision.py          # all four collections (~10 minutes on 2 cores)
    python benchmarks/precision.py --quick  # cranfield, 50 queries
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_weights import compare, speed  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402

from colcade.encoders.default import MiniLMEncoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # truncation warnings of long passages
    encoders = {"float32": MiniLMEncoder(precision="float32"), "int8": MiniLMEncoder(precision="int8")}
    rows = compare(encoders, args.quick)
    squad = ROOT.parent / "shared" / "data" / "squad2_dev_passages" / "corpus.jsonl"
    texts = [json.loads(line)["text"] for line, _ in zip(open(squad), range(64 if args.quick else 400))]
    rates = speed(encoders, texts, rounds=1 if args.quick else 3)
    body = (
        "## The default encoder's arithmetic: float32 against int8 matrix products\n\n"
        "Exhaustive MaxSim nDCG@10 (default token selection) of the same weights and graph, its matrix "
        "products in float32 and in 8-bit integers (weights per output channel, activations per token, so "
        "a passage's vectors do not depend on its batch). The target: int8 within 0.005 of float32 on every "
        "collection. Cosine: every token vector of every passage, int8 against float32.\n\n"
        + table(["collection", "float32 nDCG@10", "int8 nDCG@10", "difference", "token cosine min / mean"], rows)
        + "\n\nEncoding speed, same graph and batching, alternating rounds (median of "
        + f"{1 if args.quick else 3}) on {len(texts)} SQuAD passages, 2 cores: "
        + ", ".join(f"{k} {v:.1f} passages/s" for k, v in rates.items())
        + "."
    )
    write_section("precision-quick" if args.quick else "precision", body, args.out)


if __name__ == "__main__":
    main()
