/* The exec guard, for hosts without BPF LSM: at sched_process_exec the new
 * image is mapped but has not run an instruction; a denied program is killed
 * there. Weaker than a refused execve (the exec itself succeeded), which is
 * why `policy explain` says so. Rules are matched by file identity, so
 * symlinks and hard links do not dodge them. */

#define S_ISUID 04000
#define S_ISGID 02000
#define SIGKILL 9
#define PAL_MAX_DEPTH 32

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pal_inode_key);
	__type(value, struct pal_inode_rule);
} exec_rules SEC(".maps");

static __always_inline struct pal_inode_rule *rule_for(__u64 dev, struct dentry *d)
{
	struct pal_inode_key k = { .dev = dev, .ino = BPF_CORE_READ(d, d_inode, i_ino) };
	return bpf_map_lookup_elem(&exec_rules, &k);
}

static __always_inline void report_exec(__u32 kind, __u32 verdict, __u32 rule, struct linux_binprm *bprm,
					__u64 dev, __u64 ino)
{
	struct pal_event *ev = event_start(kind, verdict, rule);
	if (!ev)
		return;
	ev->dev = dev;
	ev->ino = ino;
	bpf_probe_read_kernel_str(ev->path, sizeof(ev->path), BPF_CORE_READ(bprm, filename));
	bpf_ringbuf_submit(ev, 0);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(pal_exec_guard, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct pal_config *cfg = get_config();
	if (!cfg || cfg->lsm || !in_workload(cfg))
		return 0;

	struct file *file = BPF_CORE_READ(bprm, file);
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	__u64 dev = BPF_CORE_READ(inode, i_sb, s_dev);
	__u64 ino = BPF_CORE_READ(inode, i_ino);

	if (cfg->block_setid) {
		umode_t mode = BPF_CORE_READ(inode, i_mode);
		__u32 owner = BPF_CORE_READ(inode, i_uid.val);
		__u32 group = BPF_CORE_READ(inode, i_gid.val);
		__u64 ugid = bpf_get_current_uid_gid();
		int to_other_user = (mode & S_ISUID) && owner != (__u32)ugid;
		int to_other_group = (mode & S_ISGID) && group != (__u32)(ugid >> 32);
		if (to_other_user || to_other_group) {
			__u32 verdict = cfg->audit_only ? PAL_AUDIT : PAL_DENY;
			if (verdict == PAL_DENY)
				bpf_send_signal(SIGKILL);
			report_exec(PAL_EV_SETID_EXEC, verdict, PAL_NO_RULE, bprm, dev, ino);
			if (verdict == PAL_DENY)
				return 0;
		}
	}
	if (!cfg->exec_guard)
		return 0;

	/* A file with no name (memfd, O_TMPFILE, deleted): fileless execution. */
	if (BPF_CORE_READ(inode, i_nlink) == 0 && cfg->anon_exec != PAL_ALLOW) {
		__u32 verdict = cfg->audit_only || cfg->anon_exec == PAL_AUDIT ? PAL_AUDIT : PAL_DENY;
		if (verdict == PAL_DENY)
			bpf_send_signal(SIGKILL);
		struct pal_event *ev = event_start(PAL_EV_EXEC, verdict, PAL_NO_RULE);
		if (ev) {
			ev->dev = dev;
			ev->ino = ino;
			ev->arg = PAL_EXEC_ANONYMOUS;
			bpf_probe_read_kernel_str(ev->path, sizeof(ev->path), BPF_CORE_READ(bprm, filename));
			bpf_ringbuf_submit(ev, 0);
		}
		return 0;
	}

	/* The file itself, then its directories from the nearest up: the first
	 * rule found is the most specific one. */
	__u32 verdict = cfg->exec_default;
	__u32 rule = PAL_NO_RULE;
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	struct pal_inode_rule *r = rule_for(dev, d);
	if (r && r->kind == PAL_MATCH_FILE) {
		verdict = r->verdict;
		rule = r->rule;
	} else {
		for (int depth = 1; depth <= PAL_MAX_DEPTH; depth++) {
			struct dentry *parent = BPF_CORE_READ(d, d_parent);
			if (parent == d)
				break;
			d = parent;
			r = rule_for(dev, d);
			if (r && (r->kind == PAL_MATCH_DIR_TREE || (r->kind == PAL_MATCH_DIR_DIRECT && depth == 1))) {
				verdict = r->verdict;
				rule = r->rule;
				break;
			}
			if (depth == PAL_MAX_DEPTH && cfg->exec_default == PAL_DENY) {
				/* Too deep to check: an allowlist must not guess. */
				verdict = PAL_DENY;
			}
		}
	}
	if (verdict == PAL_ALLOW)
		return 0;
	if (verdict == PAL_DENY && cfg->audit_only)
		verdict = PAL_AUDIT;
	if (verdict == PAL_DENY)
		bpf_send_signal(SIGKILL);
	report_exec(PAL_EV_EXEC, verdict, rule, bprm, dev, ino);
	return 0;
}
