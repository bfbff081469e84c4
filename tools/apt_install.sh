#!/usr/bin/env bash
# apt_install.sh PKG...: install Debian packages quietly, as root or through sudo.
# The test scripts call it for the toolchains they find missing (cross gcc, qemu,
# clang), so that a clean CI machine needs nothing installed by hand.
set -euo pipefail
(($#)) || exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
