# Palisade: build, bpf, install, test, bench, demo.
PREFIX ?= /usr/local
CARGO ?= cargo
BINS := palisade containerd-shim-palisade-v2

.PHONY: all build bpf install test test-vm bench-vm test-unit test-integration lint bench bench-smoke demo fuzz deps clean

all: build

## deps: system packages every other target needs (Debian; run as root).
deps:
	scripts/install-deps.sh

## build: release binaries in target/release/.
build:
	$(CARGO) build --release --workspace

## bpf: the BPF objects on their own (cargo builds them too, through enforce/build.rs).
bpf:
	mkdir -p target/bpf
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > target/bpf/vmlinux.h
	for o in palisade probe_lsm; do \
	  clang -g -O2 -target bpf -Wall -Werror -D__TARGET_ARCH_x86 -Itarget/bpf -Ibpf-progs \
	    -c bpf-progs/$$o.bpf.c -o target/bpf/$$o.bpf.o && llvm-strip -g target/bpf/$$o.bpf.o || exit 1; done

install: build
	install -d $(PREFIX)/bin
	for b in $(BINS); do [ -x target/release/$$b ] && install -m 0755 target/release/$$b $(PREFIX)/bin/$$b || true; done

## test: everything, as root: unit, property and golden tests, the real-kernel suites, then the
## BPF LSM suite in a VM.
test: lint
	$(CARGO) build --workspace
	$(CARGO) test --workspace --no-fail-fast
	target/debug/palisade-bench --quick > /dev/null
	tests/vm/run.sh

## test-vm: the BPF LSM suite in a QEMU/TCG guest booting Debian's cloud kernel with lsm=...,bpf
## (this host's kernel refuses BPF LSM programs). Fetches the kernel package into target/vm/.
test-vm:
	$(CARGO) build --workspace
	tests/vm/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench: policy compile (criterion), then Palisade against runc on this machine; writes bench/results/.
bench:
	$(CARGO) bench -p palisade-policy --bench compile
	$(CARGO) build --release --workspace
	target/release/palisade-bench
	PALISADE_BIN_DIR=target/release tests/vm/run.sh --bench

## bench-vm: the BPF LSM hot paths (ratios) in the QEMU/TCG guest; writes bench/results/<date>-vm.md.
bench-vm:
	$(CARGO) build --release --workspace
	PALISADE_BIN_DIR=target/release tests/vm/run.sh --bench

## bench-smoke: a few iterations of everything, to keep `make bench` working (CI).
bench-smoke:
	$(CARGO) build --workspace
	target/debug/palisade-bench --quick

## demo: a private containerd runs the attack table under runc and under Palisade.
demo:
	$(CARGO) build --workspace
	target/debug/palisade-demo

## demo-host: the same attacks as plain processes under `palisade run`.
demo-host:
	$(CARGO) build --workspace
	scripts/demo.sh

## fuzz: the policy loader under libFuzzer for FUZZ_SECONDS (needs `cargo install cargo-fuzz`).
FUZZ_SECONDS ?= 600
fuzz:
	cd policy/fuzz && $(CARGO) fuzz run -s none load_and_compile -- -max_total_time=$(FUZZ_SECONDS) -max_len=4096

clean:
	$(CARGO) clean
