#!/usr/bin/env bash
# System packages Palisade's build, tests and demo need on Debian (bookworm).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: run as root (apt-get)" >&2
  exit 1
fi
pkgs=(clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make
      containerd runc busybox-static libseccomp-dev protobuf-compiler iproute2 util-linux
      qemu-system-x86 cpio)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Offline validation of the Kubernetes manifests in containerd-config/ (tests).
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install -q kubernetes-validate
fi
# The CRI client the CRI tests drive containerd with (kubelet's calls, no crictl package here).
if ! python3 -c 'import grpc, cri_api.v1.api_pb2' >/dev/null 2>&1; then
  python3 -m pip install -q container-runtime-interface-api
fi
