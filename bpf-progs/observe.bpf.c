/* Evidence for the in-process layers. Landlock and seccomp refuse inside the
 * kernel without telling user space; this raw tracepoint reports a watched
 * syscall of the workload that fails with EACCES or EPERM, with the path it
 * named. User space attributes it to a rule of the plan.
 *
 * It runs at every syscall exit on the host, so the cheapest test comes
 * first: almost every syscall succeeds or fails otherwise, and leaves after
 * one comparison. The arguments are read at exit from the saved user
 * registers, which a failed syscall leaves as they were (arm64 keeps the
 * first one in orig_x0), so no per-thread state is kept at entry and no
 * program runs there. */

#define EPERM 1
#define EACCES 13
#define PAL_MAX_SYSCALL 512

/* Syscall number -> what to report: 1-3 the path in argument 0-2,
 * 7 nothing, 9-11 the value of argument 0-2 (e.g. a socket type). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PAL_MAX_SYSCALL);
	__type(key, __u32);
	__type(value, __u8);
} watched_syscalls SEC(".maps");

static __always_inline __u64 arg_of(struct pt_regs *regs, __u8 index)
{
	switch (index) {
	case 0: return PT_REGS_PARM1_CORE_SYSCALL(regs);
	case 1: return PT_REGS_PARM2_CORE_SYSCALL(regs);
	case 2: return PT_REGS_PARM3_CORE_SYSCALL(regs);
	default: return 0;
	}
}

SEC("tp_btf/sys_exit")
int BPF_PROG(pal_sys_exit, struct pt_regs *regs, long ret)
{
	if (ret != -EACCES && ret != -EPERM)
		return 0;
	long id = BPF_CORE_READ(regs, orig_ax);
	if (id < 0 || id >= PAL_MAX_SYSCALL)
		return 0;
	__u32 nr = id;
	__u8 *watch = bpf_map_lookup_elem(&watched_syscalls, &nr);
	if (!watch || *watch == 0 || *watch > 11)
		return 0;
	struct pal_config *cfg = get_config();
	if (!cfg || !in_workload(cfg))
		return 0;
	__u8 kind = *watch;
	struct pal_event *ev = event_start(PAL_EV_SYSCALL, PAL_DENY, PAL_NO_RULE);
	if (!ev)
		return 0;
	ev->ret = ret;
	ev->syscall = nr;
	if (kind >= 9) {
		ev->arg = arg_of(regs, kind - 9);
	} else if (kind != 7) {
		__u64 path = arg_of(regs, kind - 1);
		if (path)
			bpf_probe_read_user_str(ev->path, sizeof(ev->path), (const void *)path);
	}
	bpf_ringbuf_submit(ev, 0);
	return 0;
}
