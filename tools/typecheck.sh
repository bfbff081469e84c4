#!/usr/bin/env bash
# mypy over the installed package (config: pyproject.toml's [tool.mypy]).
#
#   tools/typecheck.sh        the package pip installed (tools/test.sh runs it after installing)
#   PYTHONPATH=/tmp/rwe-site-NAME tools/typecheck.sh      a private install (tools/dev_install.sh)
#
# It checks the install, not the source tree: quantize/ and cli/ only become
# rwkv_edge.quantize and rwkv_edge.cli when installed, and their relative imports
# (from ..model import ...) mean nothing outside the package. mypy runs from an
# empty directory so that the checkout's own rwkv_edge/ (without those two) is
# not found first; a private install is handed over as MYPYPATH (mypy ignores
# PYTHONPATH). Error paths point into the install: rwkv_edge/cli/x.py is cli/x.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
here=$(mktemp -d)
trap 'rm -rf "$here"' EXIT
cd "$here"
export MYPYPATH=${PYTHONPATH:-}
python3 -m mypy --config-file "$root/pyproject.toml" --cache-dir "$here/.mypy_cache" -p rwkv_edge
