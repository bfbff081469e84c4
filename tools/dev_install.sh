#!/usr/bin/env bash
# Private install of the working tree for one developer or helper, so that
# several can build and test in the same checkout without sharing build/.
#   tools/dev_install.sh NAME   ->  then: export PYTHONPATH=/tmp/rwe-site-NAME
set -euo pipefail
name=${1:?usage: tools/dev_install.sh NAME}
root=$(cd "$(dirname "$0")/.." && pwd)
src=/tmp/rwe-src-$name
site=/tmp/rwe-site-$name
rm -rf "$src" && mkdir -p "$src"
tar -C "$root" --exclude=./.git --exclude=./build --exclude='*.egg-info' -cf - . | tar -C "$src" -xf -
rm -rf "$site"
# No pipe after pip: a failed install (a failed C build under RWKV_EDGE_REQUIRE_C=1) fails here.
PIP_ROOT_USER_ACTION=ignore pip install -q --no-deps --no-build-isolation --target "$site" "$src"
echo "export PYTHONPATH=$site"
