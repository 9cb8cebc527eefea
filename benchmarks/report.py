"""Shared by the benchmark scripts: machine description, medians, and BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = open("/proc/cpuinfo").read()
        isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    except OSError:
        isa = "?"
    return f"{cpu} ({isa}), {os.cpu_count()} cores, Python {platform.python_version()}"


def timed(fn: Callable[[], object], repeats: int) -> np.ndarray:
    """Seconds per call, ``repeats`` times (callers interleave contenders and take medians)."""
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return np.array(out)


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str, out: Path) -> None:
    """Replace (or append) the ``name`` section of the benchmarks file ``out``."""
    command = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    section = (
        f"<!-- {name}:start -->\n{body}\n\nMade by `{command}` on {time.strftime('%Y-%m-%d')}, "
        f"{machine()}.\n<!-- {name}:end -->"
    )
    text = out.read_text() if out.exists() else "# colcade benchmarks\n"
    pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    out.write_text(text)
    print(body)


def section_rows(name: str, out: Path) -> tuple[list[list[str]], str]:
    """The table rows of section ``name`` in ``out`` and its "Made by" line (for a run that adds rows)."""
    text = out.read_text() if out.exists() else ""
    found = re.search(rf"<!-- {name}:start -->(.*?)<!-- {name}:end -->", text, re.S)
    if not found:
        return [], ""
    lines = found.group(1).splitlines()
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.startswith("| ")][1:]
    made = next((line for line in lines if line.startswith("Made by ")), "")
    return rows, made[0].lower() + made[1:] if made else "made by an earlier run."


def rss_anon() -> int:
    """Resident memory not backed by files (memory-mapped index files excluded), in bytes."""
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0
