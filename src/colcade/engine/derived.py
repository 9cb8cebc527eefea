"""Derived files: arrays computed from committed data and saved beside it to skip the work next time.

Written whole or not at all (a temporary name, then a rename), read memory-mapped. Nothing
depends on them: a missing, damaged or implausible file is computed again, and a folder that
cannot be written (read-only, or removed by a compaction meanwhile) leaves the arrays in the
process's memory. Used for the shortlist's list assignments and the posting lists.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def write_array(path: Path, array: np.ndarray) -> None:
    """Save ``array`` at ``path`` atomically: readers see the whole file or none."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def derived(
    paths: Sequence[Path] | None,
    whole: Callable[..., bool],
    build: Callable[[], tuple[np.ndarray, ...]],
    strict: bool = False,
) -> tuple[np.ndarray, ...]:
    """The arrays saved at ``paths`` when ``whole(*arrays)`` accepts them, else ``build()``'s,
    saved there. ``strict`` (a writer): a failure to save raises, and nothing is read first."""
    if paths is not None and not strict:
        try:
            saved = tuple(np.load(p, mmap_mode="r", allow_pickle=False) for p in paths)
            if whole(*saved):
                return saved
        except Exception:  # missing, or damaged (EOFError, ValueError...): build again
            pass
    arrays = build()
    if paths is not None:
        try:  # whoever builds them builds the same arrays, so two builders never mix badly
            for path, array in zip(paths, arrays):
                write_array(path, array)
        except OSError:
            if strict:
                raise
    return arrays
