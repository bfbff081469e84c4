"""Build: the cffi extension (API mode, out-of-line) from csrc/; metadata is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["rwkv_edge/_build_ffi.py:ffibuilder"])
