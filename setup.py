"""Builds the compiled kernels (colcade.engine._kernels); everything else lives in pyproject.toml."""

import sys

from setuptools import Extension, setup

# Portable flags only: the AVX2 code paths carry their own target attributes and are picked
# at run time, so a wheel built here still runs on CPUs without AVX2.
flags = [] if sys.platform == "win32" else ["-O3", "-std=c11", "-fno-math-errno"]

setup(
    ext_modules=[
        Extension("colcade.engine._kernels", sources=["src/colcade/engine/_kernels.c"], extra_compile_args=flags),
    ]
)
