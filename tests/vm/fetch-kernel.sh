#!/usr/bin/env bash
# Fetches Debian's cloud kernel (with BPF LSM built in) into $1 without
# installing it on the host: the VM suite boots it under QEMU/TCG.
# Prints the path of the vmlinuz.
set -euo pipefail
out=${1:?usage: fetch-kernel.sh OUT_DIR}
mkdir -p "$out"
cd "$out"
if [ -z "$(ls boot/vmlinuz-* 2>/dev/null)" ]; then
  # The meta package names the current ABI; fall back to the newest listed.
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  if [ -z "$pkg" ]; then
    pkg=$(apt-cache search --names-only '^linux-image-[0-9.]+-[0-9]+-cloud-amd64$' | awk '{print $1}' | sort -V | tail -1)
  fi
  [ -n "$pkg" ] || { echo "fetch-kernel: no linux-image-*-cloud-amd64 in apt's lists (apt-get update?)" >&2; exit 1; }
  rm -f ./*.deb
  apt-get download -q "$pkg" >&2
  dpkg-deb -x ./"$pkg"_*.deb .
  rm -f ./*.deb
fi
ls "$PWD"/boot/vmlinuz-* | head -1
