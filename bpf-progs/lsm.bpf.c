/* The BPF LSM layer: per-cgroup LSM programs (lsm_cgroup), attached to the
 * workload's cgroup only, so they run for its processes and for nothing else
 * on the host. A refusal happens inside the system call (EACCES), before the
 * operation, which is what the exec guard and the observer cannot do.
 *
 * Hook budget: the kernel allows at most 10 distinct lsm_cgroup hooks
 * system-wide (shared by all workloads). Palisade uses 6:
 *   bprm_check_security  execve: exec rules by file identity, set-id files,
 *                        files with no name (memfd)
 *   mmap_file            PROT_EXEC mappings: `ld.so /denied/binary` and
 *                        libraries outside the allowlist never execve
 *   file_mprotect        mappings made executable after the fact
 *   file_open            file read/write/exec rules
 *   task_fix_setuid      blockSetuid: setuid/setresuid/setfsuid
 *   task_fix_setgid      blockSetuid: the gid family
 *
 * Rules are keyed by file identity (device + inode, resolved inside the
 * workload's root at setup), so symlinks, hard links, /proc/self/fd/N and
 * bind mounts reach the same key. Directory rules match through a bounded
 * walk over the dentry's ancestors that crosses mount points; rules whose
 * target did not exist at setup are matched by path (bpf_d_path). */

#define PAL_EACCES 13
#define PAL_EPERM 1
#define PAL_FMODE_READ 0x1
#define PAL_FMODE_WRITE 0x2
#define PAL_FMODE_EXEC 0x20
#define PAL_PROT_EXEC 0x4
#define PAL_VM_EXEC 0x4
/* Path components checked above a file; deeper paths are reported and, in
 * allowlist mode, refused: never silently treated as unmatched. */
#define PAL_LSM_DEPTH 48

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pal_inode_key);
	__type(value, struct pal_file_rule);
} file_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pal_path_key);
	__type(value, struct pal_inode_rule);
} exec_paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pal_path_key);
	__type(value, struct pal_file_rule);
} file_paths SEC(".maps");

/* The last components of the by-path rules: bpf_d_path runs only for a file
 * whose name is one of them, not on every open. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pal_name_key);
	__type(value, __u8);
} path_names SEC(".maps");

/* Scratch for bpf_d_path: a path key is too big for the 512-byte stack. */
struct pal_path_scratch {
	struct pal_path_key key; /* the path, zero-filled after its NUL */
	char raw[PAL_PATH_LEN];  /* bpf_d_path's output */
	struct pal_name_key name;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pal_path_scratch);
} path_scratch SEC(".maps");

/* Where the ancestor walk stands: the dentry and the mount it is seen through. */
struct pal_walk {
	struct dentry *dentry;
	struct vfsmount *mnt;
	struct dentry *root_dentry; /* the task's root: the walk stops there */
	struct vfsmount *root_mnt;
	__u32 depth;                /* path components above the file */
	int done;                   /* reached the root: nothing more to match */
	/* exec walk: the nearest matching rule */
	int found;
	struct pal_inode_rule exec_rule;
	/* file walk: accesses still without a rule, and what was decided */
	__u32 pending;
	__u32 verdict;
	__u32 rule;
	__u32 flags;
};

/* The walk's state lives in a per-CPU map value, not on the stack: the
 * 6.1 verifier inlines bpf_loop and its register spill slots clobbered a
 * stack-resident context (seen in the VM suite). BPF programs run to
 * completion on one CPU and these hooks do not nest, so one slot suffices. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pal_walk);
} walk_scratch SEC(".maps");

static __always_inline struct pal_walk *walk_state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&walk_scratch, &zero);
}

static __always_inline struct mount *pal_real_mount(struct vfsmount *mnt)
{
	return (struct mount *)((char *)mnt - bpf_core_field_offset(struct mount, mnt));
}

static __always_inline void walk_start(struct pal_walk *w, struct file *file)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	w->dentry = BPF_CORE_READ(file, f_path.dentry);
	w->mnt = BPF_CORE_READ(file, f_path.mnt);
	w->root_dentry = BPF_CORE_READ(task, fs, root.dentry);
	w->root_mnt = BPF_CORE_READ(task, fs, root.mnt);
	w->depth = 0;
	w->done = 0;
	w->found = 0;
}

static __always_inline struct pal_inode_key walk_key(const struct pal_walk *w)
{
	/* Through a local: CO-RE must not relocate pal_walk's own fields. */
	struct dentry *d = w->dentry;
	struct pal_inode_key k = {
		.dev = BPF_CORE_READ(d, d_sb, s_dev),
		.ino = BPF_CORE_READ(d, d_inode, i_ino),
	};
	return k;
}

/* One step towards the root: up a directory, or from a mount's root to the
 * directory it is mounted on (same path, so the depth stays). */
static __always_inline void walk_up(struct pal_walk *w)
{
	if (w->dentry == w->root_dentry && w->mnt == w->root_mnt) {
		w->done = 1;
		return;
	}
	struct vfsmount *mnt = w->mnt;
	struct dentry *dentry = w->dentry;
	struct dentry *mnt_root = BPF_CORE_READ(mnt, mnt_root);
	if (dentry == mnt_root) {
		struct mount *m = pal_real_mount(mnt);
		struct mount *parent = BPF_CORE_READ(m, mnt_parent);
		if (parent == m) {
			w->done = 1;
			return;
		}
		w->dentry = BPF_CORE_READ(m, mnt_mountpoint);
		w->mnt = (struct vfsmount *)((char *)parent + bpf_core_field_offset(struct mount, mnt));
		return;
	}
	struct dentry *up = BPF_CORE_READ(dentry, d_parent);
	if (up == dentry) {
		w->done = 1;
		return;
	}
	w->dentry = up;
	w->depth++;
}

static __always_inline int kind_matches(__u8 kind, __u32 depth)
{
	if (kind == PAL_MATCH_FILE)
		return depth == 0;
	if (kind == PAL_MATCH_DIR_DIRECT)
		return depth == 1;
	return depth >= 1;
}

/* The task's view of the file's path as a map key. d_path builds the name at
 * the end of its buffer and moves it to the front, leaving a copy behind the
 * NUL, so the key is a zeroed copy up to the NUL, or no key would ever match. */
static __always_inline struct pal_path_key *full_path(struct file *file)
{
	__u32 zero = 0;
	struct pal_path_scratch *s = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!s)
		return 0;
	if (bpf_d_path((struct path *)&file->f_path, s->raw, sizeof(s->raw)) < 0)
		return 0;
	__builtin_memset(&s->key, 0, sizeof(s->key));
	bpf_probe_read_kernel_str(s->key.path, sizeof(s->key.path), s->raw);
	return &s->key;
}

/* The path key, only for files whose name some by-path rule ends with. */
static __always_inline struct pal_path_key *rule_path(struct file *file)
{
	__u32 zero = 0;
	struct pal_path_scratch *s = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!s)
		return 0;
	__builtin_memset(&s->name, 0, sizeof(s->name));
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	bpf_probe_read_kernel_str(s->name.name, sizeof(s->name.name), BPF_CORE_READ(dentry, d_name.name));
	if (!bpf_map_lookup_elem(&path_names, &s->name))
		return 0;
	return full_path(file);
}

struct pal_decision {
	__u32 verdict;
	__u32 rule;
	__u32 flags;
};

static __always_inline int is_anonymous(struct inode *inode)
{
	return BPF_CORE_READ(inode, i_nlink) == 0;
}

/* bpf_loop callbacks: the verifier checks one step, not PAL_LSM_DEPTH
 * unrolled copies. Return 1 to stop. */
static long exec_walk_step(__u32 index, void *ctx)
{
	struct pal_walk *w = walk_state();
	if (!w)
		return 1;
	struct pal_inode_key k = walk_key(w);
	struct pal_inode_rule *r = bpf_map_lookup_elem(&exec_rules, &k);
	if (r && kind_matches(r->kind, w->depth)) {
		w->found = 1;
		w->exec_rule = *r;
		return 1;
	}
	walk_up(w);
	/* The verifier wants exactly 0 or 1 back. */
	return w->done ? 1 : 0;
}

/* Folds the rules of one walk level into the per-access decisions. */
static __always_inline void take_file_rule(struct pal_file_rule *r, __u32 depth, __u32 *pending, __u32 *verdict,
					   __u32 *rule, __u32 *flags)
{
	for (int a = 0; a < PAL_ACC_COUNT; a++) {
		__u32 bit = 1u << a;
		if (!(*pending & bit) || !r->access[a].set || !kind_matches(r->access[a].kind, depth))
			continue;
		*pending &= ~bit;
		/* Deny beats audit beats allow across the accesses of one open. */
		__u8 v = r->access[a].verdict;
		if (v == PAL_DENY || (v == PAL_AUDIT && *verdict == PAL_ALLOW)) {
			*verdict = v;
			*rule = r->access[a].rule;
			*flags |= bit;
		}
	}
}

static long file_walk_step(__u32 index, void *ctx)
{
	struct pal_walk *w = walk_state();
	if (!w)
		return 1;
	struct pal_inode_key k = walk_key(w);
	struct pal_file_rule *r = bpf_map_lookup_elem(&file_rules, &k);
	if (r)
		take_file_rule(r, w->depth, &w->pending, &w->verdict, &w->rule, &w->flags);
	if (!w->pending)
		return 1;
	walk_up(w);
	/* The verifier wants exactly 0 or 1 back. */
	return w->done ? 1 : 0;
}

/* The exec verdict for a file: the nearest exec rule by identity, else by
 * path for rules on targets created after setup, else the default. */
static __always_inline struct pal_decision decide_exec_file(struct pal_config *cfg, struct file *file,
							    int may_use_d_path)
{
	struct pal_decision d = { .verdict = cfg->exec_default, .rule = PAL_NO_RULE, .flags = 0 };
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	if (is_anonymous(inode)) {
		d.verdict = cfg->anon_exec;
		d.flags = PAL_EXEC_ANONYMOUS;
		return d;
	}
	struct pal_walk *w = walk_state();
	if (!w) {
		d.verdict = PAL_DENY; /* cannot happen; never guess allow */
		return d;
	}
	walk_start(w, file);
	bpf_loop(PAL_LSM_DEPTH, exec_walk_step, 0, 0);
	if (w->found) {
		d.verdict = w->exec_rule.verdict;
		d.rule = w->exec_rule.rule;
		return d;
	}
	if (!w->done) {
		d.flags |= PAL_EXEC_TOO_DEEP;
		if (cfg->exec_default == PAL_DENY)
			d.verdict = PAL_DENY;
	}
	if (may_use_d_path && cfg->path_rules) {
		struct pal_path_key *key = rule_path(file);
		struct pal_inode_rule *r = key ? bpf_map_lookup_elem(&exec_paths, key) : 0;
		if (r) {
			d.verdict = r->verdict;
			d.rule = r->rule;
		}
	}
	return d;
}

static __always_inline void report_lsm(__u32 kind, struct pal_decision *d, struct file *file, __u64 arg,
				       const char *name)
{
	struct pal_event *ev = event_start(kind, d->verdict, d->rule);
	if (!ev)
		return;
	ev->arg = arg;
	if (file) {
		struct inode *inode = BPF_CORE_READ(file, f_inode);
		ev->dev = BPF_CORE_READ(inode, i_sb, s_dev);
		ev->ino = BPF_CORE_READ(inode, i_ino);
		struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
		bpf_probe_read_kernel_str(ev->path, sizeof(ev->path), BPF_CORE_READ(dentry, d_name.name));
	}
	if (name)
		bpf_probe_read_kernel_str(ev->path, sizeof(ev->path), name);
	bpf_ringbuf_submit(ev, 0);
}

/* Applies a decision: 1 lets the operation go on, 0 refuses it with EACCES. */
static __always_inline int enforce(struct pal_config *cfg, struct pal_decision *d, __u32 kind, struct file *file,
				   __u64 arg, const char *name)
{
	if (d->verdict == PAL_ALLOW)
		return 1;
	if (d->verdict == PAL_DENY && cfg->audit_only)
		d->verdict = PAL_AUDIT;
	report_lsm(kind, d, file, arg, name);
	if (d->verdict == PAL_AUDIT)
		return 1;
	bpf_set_retval(-PAL_EACCES);
	return 0;
}

SEC("lsm_cgroup/bprm_check_security")
int BPF_PROG(pal_lsm_bprm_check, struct linux_binprm *bprm)
{
	struct pal_config *cfg = get_config();
	if (!cfg)
		return 1;
	struct file *file = bprm->file;
	const char *name = BPF_CORE_READ(bprm, filename);
	if (cfg->block_setid) {
		struct inode *inode = BPF_CORE_READ(file, f_inode);
		umode_t mode = BPF_CORE_READ(inode, i_mode);
		__u64 ugid = bpf_get_current_uid_gid();
		int to_other_user = (mode & S_ISUID) && BPF_CORE_READ(inode, i_uid.val) != (__u32)ugid;
		int to_other_group = (mode & S_ISGID) && BPF_CORE_READ(inode, i_gid.val) != (__u32)(ugid >> 32);
		if (to_other_user || to_other_group) {
			struct pal_decision d = { .verdict = PAL_DENY, .rule = PAL_NO_RULE, .flags = PAL_EXEC_SETID };
			if (!enforce(cfg, &d, PAL_EV_LSM_EXEC, file, d.flags, name))
				return 0;
		}
	}
	if (cfg->lsm_exec) {
		struct pal_decision d = decide_exec_file(cfg, file, 1);
		if (!enforce(cfg, &d, PAL_EV_LSM_EXEC, file, d.flags, name))
			return 0;
	}
	/* The workload's entrypoint is running: from now on its uid/gid is fixed. */
	cfg->setid_armed = 1;
	return 1;
}

static __always_inline int check_exec_mapping(struct file *file)
{
	struct pal_config *cfg = get_config();
	if (!cfg || !cfg->lsm_exec || !file)
		return 1;
	/* No bpf_d_path here: the kernel does not allow it in file_mprotect. */
	struct pal_decision d = decide_exec_file(cfg, file, 0);
	d.flags |= PAL_EXEC_MAPPING;
	return enforce(cfg, &d, PAL_EV_LSM_EXEC, file, d.flags, 0);
}

SEC("lsm_cgroup/mmap_file")
int BPF_PROG(pal_lsm_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags)
{
	if (!(prot & PAL_PROT_EXEC))
		return 1;
	return check_exec_mapping(file);
}

SEC("lsm_cgroup/file_mprotect")
int BPF_PROG(pal_lsm_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)
{
	if (!(prot & PAL_PROT_EXEC))
		return 1;
	if (BPF_CORE_READ(vma, vm_flags) & PAL_VM_EXEC)
		return 1;
	return check_exec_mapping(BPF_CORE_READ(vma, vm_file));
}

SEC("lsm_cgroup/file_open")
int BPF_PROG(pal_lsm_file_open, struct file *file)
{
	struct pal_config *cfg = get_config();
	if (!cfg || !cfg->lsm_file)
		return 1;
	__u32 fmode = BPF_CORE_READ(file, f_mode);
	__u32 wanted = 0;
	if (fmode & PAL_FMODE_READ)
		wanted |= 1u << PAL_ACC_READ;
	if (fmode & PAL_FMODE_WRITE)
		wanted |= 1u << PAL_ACC_WRITE;
	if (fmode & PAL_FMODE_EXEC)
		wanted |= 1u << PAL_ACC_EXEC;
	if (!wanted)
		return 1;
	struct pal_walk *w = walk_state();
	if (!w)
		return 0; /* cannot happen; never guess allow */
	walk_start(w, file);
	w->pending = wanted;
	w->verdict = PAL_ALLOW;
	w->rule = PAL_NO_RULE;
	w->flags = 0;
	bpf_loop(PAL_LSM_DEPTH, file_walk_step, 0, 0);
	struct pal_decision d = { .verdict = w->verdict, .rule = w->rule, .flags = w->flags };
	__u32 pending = w->pending;
	if (pending && !w->done) {
		/* Not silent: a path deeper than the walk is reported. */
		struct pal_decision deep = { .verdict = PAL_AUDIT, .rule = PAL_NO_RULE, .flags = 0 };
		report_lsm(PAL_EV_LSM_FILE, &deep, file, PAL_FILE_TOO_DEEP | pending, 0);
	}
	if (cfg->path_rules) {
		struct pal_path_key *key = rule_path(file);
		struct pal_file_rule *r = key ? bpf_map_lookup_elem(&file_paths, key) : 0;
		if (r) {
			pending = wanted;
			take_file_rule(r, 0, &pending, &d.verdict, &d.rule, &d.flags);
		}
	}
	if (d.verdict == PAL_ALLOW)
		return 1;
	/* The full path for the event (the generic report has the name only). */
	struct pal_path_key *full = full_path(file);
	return enforce(cfg, &d, PAL_EV_LSM_FILE, file, d.flags, full ? full->path : 0);
}

/* A uid/gid change to another id, once the workload's entrypoint runs. */
static __always_inline int check_setid(__u32 old_id, __u32 new_id, __u64 gid_bit)
{
	struct pal_config *cfg = get_config();
	if (!cfg || !cfg->block_setid || !cfg->setid_armed || old_id == new_id)
		return 1;
	struct pal_decision d = { .verdict = PAL_DENY, .rule = PAL_NO_RULE, .flags = 0 };
	if (cfg->audit_only)
		d.verdict = PAL_AUDIT;
	report_lsm(PAL_EV_LSM_SETID, &d, 0, gid_bit | new_id, 0);
	if (d.verdict == PAL_AUDIT)
		return 1;
	bpf_set_retval(-PAL_EPERM);
	return 0;
}

SEC("lsm_cgroup/task_fix_setuid")
int BPF_PROG(pal_lsm_setuid, struct cred *new, const struct cred *old, int flags)
{
	__u32 o = BPF_CORE_READ(old, euid.val), n = BPF_CORE_READ(new, euid.val);
	if (o == n) {
		o = BPF_CORE_READ(old, uid.val);
		n = BPF_CORE_READ(new, uid.val);
	}
	if (o == n) {
		o = BPF_CORE_READ(old, fsuid.val);
		n = BPF_CORE_READ(new, fsuid.val);
	}
	return check_setid(o, n, 0);
}

SEC("lsm_cgroup/task_fix_setgid")
int BPF_PROG(pal_lsm_setgid, struct cred *new, const struct cred *old, int flags)
{
	__u32 o = BPF_CORE_READ(old, egid.val), n = BPF_CORE_READ(new, egid.val);
	if (o == n) {
		o = BPF_CORE_READ(old, gid.val);
		n = BPF_CORE_READ(new, gid.val);
	}
	if (o == n) {
		o = BPF_CORE_READ(old, fsgid.val);
		n = BPF_CORE_READ(new, fsgid.val);
	}
	return check_setid(o, n, PAL_SETID_GID);
}
