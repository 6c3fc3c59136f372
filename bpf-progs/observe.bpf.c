/* Evidence for the in-process layers. Landlock and seccomp refuse inside the
 * kernel without telling user space; these two raw tracepoints report a
 * watched syscall of the workload that fails with EACCES or EPERM, with the
 * path it named. User space attributes it to a rule of the plan. */

#define EPERM 1
#define EACCES 13
#define PAL_MAX_SYSCALL 512

/* Syscall number -> what to keep at entry: 1-3 the path in argument 0-2,
 * 7 nothing, 9-11 the value of argument 0-2 (e.g. a socket type). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PAL_MAX_SYSCALL);
	__type(key, __u32);
	__type(value, __u8);
} watched_syscalls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);  /* tid */
	__type(value, __u64); /* the kept argument: a user pointer or a value */
} pending_args SEC(".maps");

static __always_inline __u64 arg_of(struct pt_regs *regs, __u8 index)
{
	switch (index) {
	case 0: return PT_REGS_PARM1_CORE_SYSCALL(regs);
	case 1: return PT_REGS_PARM2_CORE_SYSCALL(regs);
	case 2: return PT_REGS_PARM3_CORE_SYSCALL(regs);
	default: return 0;
	}
}

SEC("tp_btf/sys_enter")
int BPF_PROG(pal_sys_enter, struct pt_regs *regs, long id)
{
	if (id < 0 || id >= PAL_MAX_SYSCALL)
		return 0;
	__u32 nr = id;
	__u8 *watch = bpf_map_lookup_elem(&watched_syscalls, &nr);
	if (!watch || *watch == 0 || *watch == 7 || *watch > 11)
		return 0;
	struct pal_config *cfg = get_config();
	if (!cfg || !in_workload(cfg))
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u8 index = *watch >= 9 ? *watch - 9 : *watch - 1;
	__u64 arg = arg_of(regs, index);
	bpf_map_update_elem(&pending_args, &tid, &arg, BPF_ANY);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(pal_sys_exit, struct pt_regs *regs, long ret)
{
	long id = BPF_CORE_READ(regs, orig_ax);
	if (id < 0 || id >= PAL_MAX_SYSCALL)
		return 0;
	__u32 nr = id;
	__u8 *watch = bpf_map_lookup_elem(&watched_syscalls, &nr);
	if (!watch || *watch == 0)
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *kept = bpf_map_lookup_elem(&pending_args, &tid);
	__u64 arg = kept ? *kept : 0;
	if (kept)
		bpf_map_delete_elem(&pending_args, &tid);
	if (ret != -EACCES && ret != -EPERM)
		return 0;
	struct pal_config *cfg = get_config();
	if (!cfg || !in_workload(cfg))
		return 0;
	struct pal_event *ev = event_start(PAL_EV_SYSCALL, PAL_DENY, PAL_NO_RULE);
	if (!ev)
		return 0;
	ev->ret = ret;
	ev->syscall = nr;
	if (*watch >= 9)
		ev->arg = arg;
	else if (arg)
		bpf_probe_read_user_str(ev->path, sizeof(ev->path), (const void *)arg);
	bpf_ringbuf_submit(ev, 0);
	return 0;
}
