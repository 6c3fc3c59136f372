/* Loaded once by `palisade check`: whether this kernel accepts per-cgroup BPF
 * LSM programs. It never attaches anything. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("lsm_cgroup/socket_bind")
int BPF_PROG(pal_probe_lsm, struct socket *sock, struct sockaddr *address, int addrlen)
{
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
