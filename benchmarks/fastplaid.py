"""fast-plaid (PyLate's PLAID engine, Rust) and colcade side by side on the same vectors (issue 16).

    python benchmarks/fastplaid.py                     # 10,000 passages, text and patches
    python benchmarks/fastplaid.py --sizes 100000 --kinds text

Vectors come from benchmarks/realistic.py, as in benchmarks/scale.py (d=128, ~120 tokens a
passage, the shared collections' real queries projected, ~14 tokens). fast-plaid pins its own
torch, so it runs in its own venv (benchmarks/.cache/fastplaid-venv, made on first use with
`pip install fast-plaid`: ~4.8 GB) in a subprocess that reads the vectors from .npy files.
Both build with every core and search one query at a time on one thread (torch.set_num_threads
(1) for fast-plaid; colcade's search is single-threaded). fast-plaid runs at its defaults
(nbits=4, n_ivf_probe=8, n_full_scores=4096) and at PLAID's published 2 bits; colcade at its
defaults. Fidelity@10 is to exhaustive float MaxSim over the vectors before compression, on
the first 30 queries; latency over 200.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realistic import passages  # noqa: E402
from report import ROOT, table, write_section  # noqa: E402
from scale import FIDELITY_QUERIES, LATENCY_QUERIES, build, float_truth, model, overlap  # noqa: E402

VENV = ROOT / "benchmarks" / ".cache" / "fastplaid-venv"

# Runs inside the fast-plaid venv: argv = folder with tokens.npy, offsets.npy, queries.npz; nbits.
RUNNER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import numpy as np, torch
    from fast_plaid import search

    folder, nbits = Path(sys.argv[1]), int(sys.argv[2])
    tokens, offsets = np.load(folder / "tokens.npy"), np.load(folder / "offsets.npy")
    z = np.load(folder / "queries.npz")
    queries = [z[k] for k in sorted(z.files, key=int)]
    docs = [torch.from_numpy(tokens[a:b].astype(np.float32)) for a, b in zip(offsets[:-1], offsets[1:])]
    index = folder / f"fastplaid-{nbits}"
    fp = search.FastPlaid(index=str(index), device="cpu")
    start = time.perf_counter()
    fp.create(documents_embeddings=docs, nbits=nbits)
    build_s = time.perf_counter() - start
    del docs
    torch.set_num_threads(1)
    fp = search.FastPlaid(index=str(index), device="cpu")
    fp.search(queries_embeddings=torch.from_numpy(queries[0][None]), top_k=10, show_progress=False)
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        hits = fp.search(queries_embeddings=torch.from_numpy(q[None]), top_k=10, show_progress=False)[0]
        times.append((time.perf_counter() - start) * 1e3)
        found.append([str(i) for i, _ in hits])
    disk = sum(f.stat().st_size for f in index.rglob("*") if f.is_file())
    print(json.dumps({"build_s": build_s, "times": times, "found": found, "disk": disk}))
    """
)


def venv_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "fast-plaid", "numpy"], check=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--kinds", nargs="+", default=["text", "patches"])
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    python = venv_python()
    fitted = model()
    queries = [q for q in fitted.queries if len(q)][:LATENCY_QUERIES]
    rows = []
    for n in args.sizes:
        for kind in args.kinds:
            folder = Path(tempfile.mkdtemp(dir=ROOT / "benchmarks" / ".cache"))
            try:
                generated = [t for batch in passages(fitted, n, kind, batch=50_000) for t in batch]
                tokens = np.concatenate(generated).astype(np.float16)
                np.save(folder / "tokens.npy", tokens)
                np.save(folder / "offsets.npy", np.cumsum([0] + [len(t) for t in generated]))
                np.savez(folder / "queries.npz", **{str(i): q.astype(np.float32) for i, q in enumerate(queries)})
                n_tokens = len(tokens)
                del generated, tokens
                truth = float_truth(n, kind, queries[:FIDELITY_QUERIES])
                (folder / "runner.py").write_text(RUNNER)
                for nbits in (4, 2):
                    out = subprocess.run(
                        [str(python), str(folder / "runner.py"), str(folder), str(nbits)],
                        capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    rows.append(
                        [
                            f"{n:,}",
                            kind,
                            f"fast-plaid {nbits}-bit (n_ivf_probe 8, n_full_scores 4096)",
                            f"{r['disk'] / n_tokens:.1f}",
                            f"{r['build_s']:.0f}",
                            f"{np.median(r['times']):.1f} / {np.percentile(r['times'], 95):.1f}",
                            f"{overlap(r['found'][:FIDELITY_QUERIES], truth):.3f}",
                        ]
                    )
                    print(rows[-1], file=sys.stderr)
                built = build(folder / "colcade", n, kind)
                out = subprocess.run(
                    [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--measure", str(folder / "colcade")],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(
                    [
                        f"{n:,}",
                        kind,
                        "colcade (defaults: 2-bit residuals)",
                        f"{built['disk'] / built['tokens']:.1f}",
                        f"{built['build_s']:.0f}",
                        f"{r['p50']:.1f} / {r['p95']:.1f}",
                        f"{overlap(r['found'], truth):.3f}",
                    ]
                )
                print(rows[-1], file=sys.stderr)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            report(rows, args)


def report(rows: list[list[str]], args: argparse.Namespace) -> None:
    header = ["passages", "kind", "engine", "disk B/token", "build s", "p50 / p95 ms", "fidelity@10 to float"]
    body = (
        "## fast-plaid and colcade side by side (d=128, realistic synthetic tokens)\n\n"
        + table(header, rows)
        + "\n\nThe same vectors for both (benchmarks/realistic.py, as in the scale table): built with every "
        f"core, searched one query at a time on one thread ({LATENCY_QUERIES} queries; fidelity@10 to "
        f"exhaustive float MaxSim on the first {FIDELITY_QUERIES}). fast-plaid in its own venv "
        "(fast-plaid 1.7, torch 2.11, CPU). PLAID's published figures: 2-bit residuals are 32 bytes a "
        "token at d=128 plus a 4-byte centroid id (36 B/token, its IVF not counted), with nDCG within a "
        "few tenths of a point of uncompressed ColBERTv2 (Santhanam et al., ColBERTv2, NAACL 2022; "
        "PLAID, CIKM 2022)."
    )
    write_section("fastplaid", body, args.out)


if __name__ == "__main__":
    main()
