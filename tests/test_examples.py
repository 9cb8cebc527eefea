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


def test_quality_benchmark_quick(tmp_path):
    if not (ROOT.parent / "shared" / "data" / "cranfield").is_dir():
        pytest.skip("../shared/data is not available")
    out_file = tmp_path / "BENCHMARKS.md"
    run("benchmarks/quality.py", "--quick", "--out", str(out_file))
    text = out_file.read_text()
    assert "| cranfield |" in text and "fidelity@10" in text and "tokens stored" in text


def test_encoder_benchmark_quick(tmp_path):
    if not (ROOT.parent / "shared" / "data" / "squad2_dev_passages").is_dir():
        pytest.skip("../shared/data is not available")
    out_file = tmp_path / "BENCHMARKS.md"
    run("benchmarks/encoder.py", "--quick", "--out", str(out_file))
    text = out_file.read_text()
    assert "passages/s" in text and "query p50" in text and "fp32 torch reference" in text


def test_peers_benchmark_quick(tmp_path):
    out_file = tmp_path / "BENCHMARKS.md"
    run("benchmarks/peers.py", "--quick", "--out", str(out_file))
    text = out_file.read_text()
    assert "| 2,000 | colcade |" in text and "| 2,000 | numpy-exhaustive |" in text
    assert "numpy (matmul + max per passage)" in text and "PyLate" in text  # kernel table, and the peer not run


def test_core_benchmark_quick(tmp_path):
    out_file = tmp_path / "BENCHMARKS.md"
    out = run("benchmarks/core.py", "--quick", "--out", str(out_file))
    text = out_file.read_text()
    assert "float MaxSim" in out and "Hamming MaxSim" in text and "recall@10" in text
    assert "benchmarks/core.py --quick" in text  # the command that made it


@pytest.mark.parametrize(
    "marker, expected",
    [
        ("quickstart-text", "violin "),
        ("quickstart-vectors", "doc-2 "),
        ("quickstart-langchain", "ColBERT scores passages with MaxSim."),
        ("quickstart-llamaindex", "colbert"),
    ],
)
def test_readme_quickstarts_run(tmp_path, marker, expected):
    """The Python snippets in README.md, executed as written."""
    readme = (ROOT / "README.md").read_text()
    code = readme.split(f"<!-- {marker} -->")[1].split("```python")[1].split("```")[0]
    (tmp_path / "snippet.py").write_text(code)
    out = run(str(tmp_path / "snippet.py"), cwd=tmp_path)
    assert out.startswith(expected)
