/* One BPF object per confined workload. The programs are split by concern
 * into the files included below; one translation unit keeps a single set of
 * maps (config, events) without map sharing between objects. */
#include "common.bpf.h"
#include "network.bpf.c"
#include "exec.bpf.c"
#include "observe.bpf.c"
#include "lsm.bpf.c"

char LICENSE[] SEC("license") = "GPL";
