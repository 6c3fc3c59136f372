/* Types shared by the BPF programs and user space (enforce/src/bpf/abi.rs
 * mirrors them with #[repr(C)]; both sides assert the sizes). */
#ifndef PALISADE_H
#define PALISADE_H

#define PAL_NO_RULE 0xffffffffu

enum pal_verdict {
	PAL_ALLOW = 0,
	PAL_DENY = 1,
	PAL_AUDIT = 2,
};

enum pal_event_kind {
	PAL_EV_EXEC = 1,        /* exec guard: a program that may not run */
	PAL_EV_CONNECT = 2,     /* cgroup/connect4|6 */
	PAL_EV_SENDMSG = 3,     /* cgroup/sendmsg4|6 (UDP) */
	PAL_EV_SOCK_CREATE = 4, /* cgroup/sock_create: raw or packet socket */
	PAL_EV_SETID_EXEC = 5,  /* exec guard: a setuid/setgid file under blockSetuid */
	PAL_EV_SYSCALL = 6,     /* observer: a syscall returned EACCES/EPERM (Landlock, seccomp) */
	PAL_EV_LSM_EXEC = 7,    /* bpf-lsm: execve or an executable mapping refused/audited */
	PAL_EV_LSM_FILE = 8,    /* bpf-lsm: file_open refused/audited */
	PAL_EV_LSM_SETID = 9,   /* bpf-lsm: a uid/gid change refused/audited */
};

/* pal_event.arg flags of PAL_EV_LSM_EXEC. */
#define PAL_EXEC_ANONYMOUS 1u /* a file with no name (memfd, O_TMPFILE, deleted) */
#define PAL_EXEC_TOO_DEEP 2u  /* the ancestor walk hit its bound */
#define PAL_EXEC_SETID 4u     /* a set-id file under blockSetuid */
#define PAL_EXEC_MAPPING 8u   /* mmap/mprotect with PROT_EXEC, not execve */
/* pal_event.arg of PAL_EV_LSM_FILE: the refused accesses (1 << enum pal_access), plus: */
#define PAL_FILE_TOO_DEEP 0x100u
/* pal_event.arg of PAL_EV_LSM_SETID: bit 32 set for a gid change; low bits the new id. */
#define PAL_SETID_GID (1ull << 32)

/* One entry per workload, index 0 of the `config` array. */
struct pal_config {
	__u64 cgroup_id;     /* the workload's cgroup v2 id */
	__u32 cgroup_level;  /* its depth below the v2 root */
	__u8 egress_default; /* enum pal_verdict */
	__u8 raw_sockets;    /* enum pal_verdict */
	__u8 exec_default;   /* enum pal_verdict */
	__u8 block_setid;    /* 1: exec of set-id files is stopped */
	__u8 audit_only;     /* 1: log, never block */
	__u8 exec_guard;     /* 1: exec rules are checked at sched_process_exec */
	__u8 lsm_exec;       /* 1: exec rules are checked by the BPF LSM programs */
	__u8 lsm_file;       /* 1: file rules are checked at file_open */
	__u8 path_rules;     /* 1: some rules are matched by path (targets missing at setup) */
	__u8 anon_exec;      /* enum pal_verdict for exec/mmap of a file with no name */
	__u8 setid_armed;    /* set by the LSM programs at the workload's first exec */
	__u8 lsm;            /* 1: the LSM programs carry exec and set-id: the exec guard stands down */
};

/* LPM key: IPv6 bytes, IPv4 stored v4-mapped (::ffff:a.b.c.d). */
struct pal_prefix_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* protocol 0 = any, port 0 = any (host byte order). */
struct pal_port_key {
	__u32 group;
	__u8 protocol;
	__u8 _pad;
	__u16 port;
};

struct pal_rule_ref {
	__u32 rule;    /* index into the plan's rule list for this table */
	__u32 verdict; /* enum pal_verdict */
};

/* Exec rules keyed by file identity (kernel dev_t encoding + inode). */
struct pal_inode_key {
	__u64 dev;
	__u64 ino;
};

enum pal_inode_rule_kind {
	PAL_MATCH_FILE = 0,
	PAL_MATCH_DIR_DIRECT = 1,
	PAL_MATCH_DIR_TREE = 2,
};

struct pal_inode_rule {
	__u32 rule;
	__u8 verdict;
	__u8 kind; /* enum pal_inode_rule_kind */
	__u8 _pad[2];
};

#define PAL_PATH_LEN 160

enum pal_access {
	PAL_ACC_READ = 0,
	PAL_ACC_WRITE = 1,
	PAL_ACC_EXEC = 2,
	PAL_ACC_COUNT = 3,
};

struct pal_access_rule {
	__u32 rule;
	__u8 verdict;
	__u8 kind; /* enum pal_inode_rule_kind */
	__u8 set;  /* 0: no rule for this access here */
	__u8 _pad;
};

/* File rules of one target, per access (most specific wins per access). */
struct pal_file_rule {
	struct pal_access_rule access[PAL_ACC_COUNT];
};

/* Rules whose target did not exist at setup, by the path the task sees
 * (bpf_d_path), zero-filled after the NUL. */
struct pal_path_key {
	char path[PAL_PATH_LEN];
};

/* The last component of a by-path rule's target, zero-filled, truncated to fit. */
#define PAL_NAME_LEN 64
struct pal_name_key {
	char name[PAL_NAME_LEN];
};

struct pal_event {
	__u64 ktime_ns; /* CLOCK_MONOTONIC */
	__u32 kind;     /* enum pal_event_kind */
	__u32 verdict;  /* enum pal_verdict: what was done */
	__u32 rule;
	__u32 pid;      /* thread group id */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__s32 ret;      /* syscall return (observer) */
	__u32 syscall;  /* syscall number (observer) */
	__u16 port;     /* host byte order */
	__u8 protocol;
	__u8 family;    /* AF_INET / AF_INET6 */
	__u8 addr[16];  /* v4-mapped for IPv4 */
	__u64 dev;
	__u64 ino;
	__u64 arg;      /* observer: the syscall argument it was asked to keep */
	char comm[16];
	char path[PAL_PATH_LEN];
};

#endif
