"""ruff (lint and format, every Python file) and mypy (strict, the library) pass: CI runs them here."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [("ruff", "check", "."), ("ruff", "format", "--check", ".")])
def test_ruff(command):
    pytest.importorskip("ruff")
    proc = run(*command)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_mypy_strict_on_the_library():
    pytest.importorskip("mypy")
    proc = run("mypy")
    assert proc.returncode == 0, proc.stdout[-4000:]
