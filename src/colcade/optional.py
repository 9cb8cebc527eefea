"""Optional dependencies: import one, or say the exact ``pip install`` line that brings it."""

from __future__ import annotations

import importlib
from types import ModuleType

from colcade.errors import MissingDependencyError


def require(module: str, install: str, purpose: str, error: type[ImportError] = MissingDependencyError) -> ModuleType:
    """``import module``, or raise ``error``: "{purpose} needs {module}: pip install {install}".

    >>> require("json", "json", "this example").__name__
    'json'
    >>> require("no_such_module", '"colcade[cli]"', "reading PDFs")
    Traceback (most recent call last):
    ...
    colcade.errors.MissingDependencyError: reading PDFs needs no_such_module: pip install "colcade[cli]"
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise error(f"{purpose} needs {module.split('.')[0]}: pip install {install}") from exc
