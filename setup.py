"""Build: the cffi extension (API mode, out-of-line) from csrc/; metadata is in pyproject.toml.

The C core is optional at install time: without a working C compiler the
package still installs and runs on the numba engine (backend="numba"), with a
warning. Set RWKV_EDGE_REQUIRE_C=1 to make a failed C build an error (CI does).
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # a missing compiler surfaces as several error types
            self._give_up(e)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:
            self._give_up(e)

    @staticmethod
    def _give_up(e: Exception) -> None:
        if os.environ.get("RWKV_EDGE_REQUIRE_C"):
            raise e
        print(
            f"WARNING: rwkv-edge's C core did not build ({e}); installing without it. "
            'The numba engine (backend="numba") will be used.',
            file=sys.stderr,
        )


setup(
    cffi_modules=["rwkv_edge/_build_ffi.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
