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
pip install -q --no-deps --no-build-isolation --target "$site" "$src" 2>&1 | grep -v "Running pip as the 'root'" || true
echo "export PYTHONPATH=$site"
