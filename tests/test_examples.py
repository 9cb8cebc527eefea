"""The README's examples and the benchmark scripts run, so they cannot rot."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path = ROOT) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_own_vectors_example_finds_its_page():
    out = run("examples/own_vectors.py")
    first_hit = out.split("\n\n")[1].splitlines()[0]
    assert "page-42 " in first_hit
    assert "after deleting page-42 and reopening" in out and "'page-42'" not in out.splitlines()[-1]


@pytest.mark.parametrize(
    "script, collection, expected",
    [
        ("core.py", None, ["float MaxSim", "Hamming MaxSim", "recall@10"]),
        ("encoder.py", "squad2_dev_passages", ["passages/s", "query p50", "fp32 torch reference"]),
        ("quality.py", "cranfield", ["| cranfield |", "fidelity@10", "tokens stored"]),
        ("compression.py", "cranfield", ["| cranfield | compressed |", "fidelity to float exact", "whole folder"]),
        ("candidates.py", "cranfield", ["| cranfield | 1,000 | 1 (default below 50k) |", "exhaustive top-10 held"]),
        ("hybrid.py", "cranfield", ["| cranfield | convex 0.2 |", "Recall@100", "lexical index"]),
        ("scale.py", "cranfield", ["| 5,000 | text |", "| 5,000 | patches |", "fidelity@10 to float"]),
        ("qdrant.py", "cranfield", ["| cranfield | exhaustive | qdrant-edge | 1.000 |", "LateIndex float16"]),
        # the peers table, the kernel table, and the row of a peer that could not run
        ("ingest.py", "scifact", ["Ingest memory", "peak RSS", "| 0.2 MB |"]),
        (
            "peers.py",
            None,
            ["| 2,000 | colcade |", "| 2,000 | numpy-exhaustive |", "numpy (matmul + max per passage)", "PyLate"],
        ),
    ],
)
def test_benchmark_quick_versions(tmp_path, script, collection, expected):
    if collection and not (ROOT.parent / "shared" / "data" / collection).is_dir():
        pytest.skip("../shared/data is not available")
    out_file = tmp_path / "BENCHMARKS.md"
    run(f"benchmarks/{script}", "--quick", "--out", str(out_file))
    text = out_file.read_text()
    assert all(e in text for e in expected), [e for e in expected if e not in text]
    assert f"benchmarks/{script} --quick" in text  # the command that made it


@pytest.mark.parametrize(
    "marker, expected",
    [
        ("quickstart-text", "violin "),
        ("quickstart-vectors", "doc-2 "),
        ("quickstart-langchain", "ColBERT scores passages with MaxSim."),
        ("quickstart-llamaindex", "colbert"),
        ("quickstart-qdrant", "violin "),
    ],
)
def test_readme_quickstarts_run(tmp_path, marker, expected):
    """The Python snippets in README.md, executed as written."""
    readme = (ROOT / "README.md").read_text()
    code = readme.split(f"<!-- {marker} -->")[1].split("```python")[1].split("```")[0]
    (tmp_path / "snippet.py").write_text(code)
    out = run(str(tmp_path / "snippet.py"), cwd=tmp_path)
    assert out.startswith(expected)


def test_readme_snippets_run_one_after_another_twice_in_one_process(tmp_path, monkeypatch):
    """A notebook user runs the quickstart cells, then runs them all again."""
    readme = (ROOT / "README.md").read_text()
    snippets = [
        readme.split(f"<!-- {marker} -->")[1].split("```python")[1].split("```")[0]
        for marker in ("quickstart-text", "quickstart-vectors")
    ]
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        for code in snippets:
            namespace: dict = {}
            exec(compile(code, "README.md", "exec"), namespace)
            assert namespace["hits"][0].id in {"violin", "doc-2"}
            namespace["index"].close()
