#!/usr/bin/env bash
# `make test-vm`: proves the BPF LSM layer in a QEMU guest (software
# emulation) running Debian's cloud kernel with `lsm=...,bpf`, since the
# development host refuses BPF LSM programs. Builds an initramfs with
# busybox-static, the project's binaries (with the shared libraries they
# need) and tests/vm/suite.sh, boots it, and turns the guest's serial output
# into pass/fail. Exits non-zero unless the guest reports BPF LSM active and
# every check passed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${PALISADE_VM_DIR:-$root/target/vm}
bin_dir=${PALISADE_BIN_DIR:-$root/target/debug}
timeout_s=${PALISADE_VM_TIMEOUT:-900}
start=$(date +%s)
# --bench: the BPF LSM hot-path ratios (tests/vm/bench.sh) instead of the suite.
mode=suite
append=${PALISADE_VM_APPEND:-}
if [ "${1:-}" = --bench ]; then
  mode=bench
  append="$append palisade_bench=1"
fi

for tool in qemu-system-x86_64 cpio busybox strip; do
  command -v "$tool" >/dev/null || { echo "test-vm: $tool is missing (make deps)" >&2; exit 1; }
done
for b in palisade palisade-probe; do
  [ -x "$bin_dir/$b" ] || { echo "test-vm: $bin_dir/$b is missing (cargo build --workspace)" >&2; exit 1; }
done

kernel=$("$here/fetch-kernel.sh" "$work/kernel")
stage=$work/initramfs
rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,proc,sys,dev,tmp,run,etc,usr/bin,usr/sbin,palisade/policies}

copy_with_libs() { # copy a binary and the shared objects it loads, at the same paths
  local src=$1 dest=$2
  strip -o "$stage$dest" "$src" 2>/dev/null || cp "$src" "$stage$dest"
  ldd "$src" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
    [ -e "$stage$lib" ] && continue
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$lib" "$stage$lib"
  done
}

cp "$(command -v busybox)" "$stage/bin/busybox"
copy_with_libs "$bin_dir/palisade" /usr/bin/palisade
copy_with_libs "$bin_dir/palisade-probe" /usr/bin/palisade-probe
[ -n "${PALISADE_VM_BPFTOOL:-}" ] && copy_with_libs "$(command -v bpftool)" /usr/sbin/bpftool
cp "$here/init" "$stage/init"
cp "$here/suite.sh" "$here/bench.sh" "$stage/palisade/"
chmod 0755 "$stage/init" "$stage/palisade/suite.sh" "$stage/palisade/bench.sh"
echo "root:x:0:0:root:/root:/bin/sh" > "$stage/etc/passwd"
echo "nobody:x:65534:65534:nobody:/:/bin/sh" >> "$stage/etc/passwd"
(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.gz"

log=$work/serial.log
echo "test-vm: booting $(basename "$kernel") under QEMU/TCG (serial log: $log)"
set +e
timeout "$timeout_s" qemu-system-x86_64 -accel tcg -m 1024 -smp 2 \
  -kernel "$kernel" -initrd "$work/initramfs.gz" \
  -append "console=ttyS0 lsm=lockdown,capability,landlock,bpf panic=-1 quiet $append" \
  -nographic -no-reboot -nic none > "$log" 2>&1
qemu_rc=$?
set -e
tr -d '\r' < "$log" | grep -E '^(PASS|FAIL|VM-SUITE|DEBUG)' || true
wall=$(( $(date +%s) - start ))
if ! grep -q "^VM-SUITE: bpf-lsm active" <(tr -d '\r' < "$log"); then
  echo "test-vm: the guest did not report BPF LSM active (qemu exit $qemu_rc); last lines:" >&2
  tail -30 "$log" >&2
  exit 1
fi
if [ "$mode" = bench ]; then
  tr -d '\r' < "$log" | grep -q '^VM-SUITE: bench done' || { echo "test-vm: the bench did not finish" >&2; tail -30 "$log" >&2; exit 1; }
  out=$root/bench/results/$(date +%F)-vm.md
  mkdir -p "$(dirname "$out")"
  {
    echo "# BPF LSM hot paths in the QEMU/TCG guest, $(date -u +%FT%TZ)"
    echo
    echo "Kernel $(basename "$kernel"), emulated: only the ratios (confined / bare, medians of interleaved runs) mean anything."
    echo
    echo "| path | rules | ratio | bare ns/op | confined ns/op |"
    echo "| --- | --- | --- | --- | --- |"
    tr -d '\r' < "$log" | awk '/^BENCH /{printf "| %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6}'
  } > "$out"
  cat "$out"
  echo "bench-vm: written to $out in $(( $(date +%s) - start ))s"
  exit 0
fi
summary=$(tr -d '\r' < "$log" | grep -E '^VM-SUITE: [0-9]+ passed, [0-9]+ failed' | tail -1)
if [ -z "$summary" ]; then
  echo "test-vm: the suite did not finish (qemu exit $qemu_rc, ${wall}s); last lines:" >&2
  tail -30 "$log" >&2
  exit 1
fi
echo "test-vm: ${summary#VM-SUITE: } in ${wall}s"
failed=$(echo "$summary" | sed -E 's/.* ([0-9]+) failed.*/\1/')
passed=$(echo "$summary" | sed -E 's/VM-SUITE: ([0-9]+) passed.*/\1/')
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
