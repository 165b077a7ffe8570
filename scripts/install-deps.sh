#!/usr/bin/env bash
# Installs the system packages the project builds and runs with (Debian/Ubuntu, as root or via sudo),
# and those named as arguments (what a script needs besides, e.g. chromium).
# Does nothing when they are already installed.
set -euo pipefail
packages=(libzmq3-dev libopenblas-dev libhdf5-dev hdf5-tools dataset-fashion-mnist fortunes zlib1g-dev pkg-config "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
