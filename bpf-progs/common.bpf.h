/* Maps and helpers every Palisade program uses. One object per workload:
 * its maps hold that workload's tables only. */
#ifndef PALISADE_COMMON_BPF_H
#define PALISADE_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "palisade.h"

_Static_assert(sizeof(struct pal_config) == 24, "pal_config layout");
_Static_assert(sizeof(struct pal_file_rule) == 24, "pal_file_rule layout");
_Static_assert(sizeof(struct pal_event) == 264, "pal_event layout");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pal_config);
} pal_config_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} events SEC(".maps");

static __always_inline struct pal_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&pal_config_map, &zero);
}

/* Tracing programs see every task on the host; only the workload's count. */
static __always_inline int in_workload(const struct pal_config *cfg)
{
	if (!cfg->cgroup_id)
		return 0;
	return bpf_get_current_ancestor_cgroup_id(cfg->cgroup_level) == cfg->cgroup_id;
}

static __always_inline struct pal_event *event_start(__u32 kind, __u32 verdict, __u32 rule)
{
	struct pal_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev)
		return 0;
	__builtin_memset(ev, 0, sizeof(*ev));
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	ev->ktime_ns = bpf_ktime_get_ns();
	ev->kind = kind;
	ev->verdict = verdict;
	ev->rule = rule;
	ev->pid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	return ev;
}

#endif
