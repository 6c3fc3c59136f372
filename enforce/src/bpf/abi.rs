//! Rust mirrors of bpf-progs/palisade.h. Sizes are asserted on both sides.

pub const NO_RULE: u32 = u32::MAX;

pub const VERDICT_ALLOW: u8 = 0;
pub const VERDICT_DENY: u8 = 1;
pub const VERDICT_AUDIT: u8 = 2;

pub const EV_EXEC: u32 = 1;
pub const EV_CONNECT: u32 = 2;
pub const EV_SENDMSG: u32 = 3;
pub const EV_SOCK_CREATE: u32 = 4;
pub const EV_SETID_EXEC: u32 = 5;
pub const EV_SYSCALL: u32 = 6;
pub const EV_LSM_EXEC: u32 = 7;
pub const EV_LSM_FILE: u32 = 8;
pub const EV_LSM_SETID: u32 = 9;

/// `RawEvent::arg` flags of exec events (`EV_EXEC`, `EV_LSM_EXEC`).
pub const EXEC_ANONYMOUS: u64 = 1;
pub const EXEC_TOO_DEEP: u64 = 2;
pub const EXEC_SETID: u64 = 4;
pub const EXEC_MAPPING: u64 = 8;
/// `RawEvent::arg` of `EV_LSM_FILE`: refused accesses (1 << ACC_*), plus this flag.
pub const FILE_TOO_DEEP: u64 = 0x100;
/// `RawEvent::arg` of `EV_LSM_SETID`: set for a gid change; the low bits are the new id.
pub const SETID_GID: u64 = 1 << 32;

pub const ACC_READ: usize = 0;
pub const ACC_WRITE: usize = 1;
pub const ACC_EXEC: usize = 2;

pub const MATCH_FILE: u8 = 0;
pub const MATCH_DIR_DIRECT: u8 = 1;
pub const MATCH_DIR_TREE: u8 = 2;

pub const PATH_LEN: usize = 160;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Config {
    pub cgroup_id: u64,
    pub cgroup_level: u32,
    pub egress_default: u8,
    pub raw_sockets: u8,
    pub exec_default: u8,
    pub block_setid: u8,
    pub audit_only: u8,
    pub exec_guard: u8,
    pub lsm_exec: u8,
    pub lsm_file: u8,
    pub path_rules: u8,
    pub anon_exec: u8,
    /// Written by the LSM programs at the workload's first exec.
    pub setid_armed: u8,
    pub lsm: u8,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PrefixKey {
    pub prefixlen: u32,
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PortKey {
    pub group: u32,
    pub protocol: u8,
    pub pad: u8,
    pub port: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RuleRef {
    pub rule: u32,
    pub verdict: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub dev: u64,
    pub ino: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct InodeRule {
    pub rule: u32,
    pub verdict: u8,
    pub kind: u8,
    pub pad: [u8; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessRule {
    pub rule: u32,
    pub verdict: u8,
    pub kind: u8,
    pub set: u8,
    pub pad: u8,
}

/// File rules of one target, per access (read, write, exec).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileRule {
    pub access: [AccessRule; 3],
}

/// A path as `bpf_d_path` writes it, zero-filled after the NUL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PathKey {
    pub path: [u8; PATH_LEN],
}

impl PathKey {
    /// `None` when the path does not fit (the kernel side could never match it).
    pub fn new(path: &str) -> Option<Self> {
        let bytes = path.as_bytes();
        if bytes.len() >= PATH_LEN || bytes.contains(&0) {
            return None;
        }
        let mut key = PathKey {
            path: [0; PATH_LEN],
        };
        key.path[..bytes.len()].copy_from_slice(bytes);
        Some(key)
    }
}

pub const NAME_LEN: usize = 64;

/// The last component of a by-path rule, as the kernel side reads a dentry's
/// name: at most NAME_LEN - 1 bytes, zero-filled.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NameKey {
    pub name: [u8; NAME_LEN],
}

impl NameKey {
    pub fn of_path(path: &str) -> Self {
        let last = path.rsplit('/').next().unwrap_or(path).as_bytes();
        let n = last.len().min(NAME_LEN - 1);
        let mut key = NameKey {
            name: [0; NAME_LEN],
        };
        key.name[..n].copy_from_slice(&last[..n]);
        key
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawEvent {
    pub ktime_ns: u64,
    pub kind: u32,
    pub verdict: u32,
    pub rule: u32,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub ret: i32,
    pub syscall: u32,
    pub port: u16,
    pub protocol: u8,
    pub family: u8,
    pub addr: [u8; 16],
    pub dev: u64,
    pub ino: u64,
    pub arg: u64,
    pub comm: [u8; 16],
    pub path: [u8; PATH_LEN],
}

const _: () = assert!(std::mem::size_of::<Config>() == 24);
const _: () = assert!(std::mem::size_of::<RawEvent>() == 264);
const _: () = assert!(std::mem::size_of::<PrefixKey>() == 20);
const _: () = assert!(std::mem::size_of::<PortKey>() == 8);
const _: () = assert!(std::mem::size_of::<InodeKey>() == 16);
const _: () = assert!(std::mem::size_of::<InodeRule>() == 8);
const _: () = assert!(std::mem::size_of::<FileRule>() == 24);
const _: () = assert!(std::mem::size_of::<PathKey>() == PATH_LEN);

/// The bytes of a plain-old-data value, for map keys and values.
pub fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a #[repr(C)] Copy type without padding-dependent invariants;
    // reading its bytes is what the BPF map interface expects.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

impl RawEvent {
    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        if data.len() < std::mem::size_of::<Self>() {
            return None;
        }
        // SAFETY: length checked; RawEvent is plain old data and any bit pattern is valid.
        Some(unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<Self>()) })
    }

    pub fn path_str(&self) -> String {
        cstr(&self.path)
    }

    pub fn comm_str(&self) -> String {
        cstr(&self.comm)
    }
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_keys_hold_the_last_component_truncated_like_the_kernel_read() {
        let k = NameKey::of_path("/etc/ssl/private.key");
        assert_eq!(&k.name[..12], b"private.key\0");
        let long = format!("/x/{}", "a".repeat(100));
        let k = NameKey::of_path(&long);
        assert_eq!(k.name[NAME_LEN - 2], b'a');
        assert_eq!(k.name[NAME_LEN - 1], 0);
    }
}
