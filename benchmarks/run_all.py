"""Regenerate BENCHMARKS.md and its plot: core kernels and search, quality on the shared
collections, and speed and memory against peers.

    python benchmarks/run_all.py           # ~30 minutes on 2 cores the first time (embeddings
                                           # are then cached in benchmarks/.cache); less after
    python benchmarks/run_all.py --quick   # the smoke versions, a minute or two
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["core.py", "encoder.py", "quality.py", "peers.py"]


def main() -> int:
    extra = sys.argv[1:]
    for script in SCRIPTS:
        started = time.time()
        print(f"== {script} {' '.join(extra)}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / script), *extra])
        print(f"== {script}: exit {code} after {time.time() - started:.0f} s", flush=True)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
