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
    pub pad: [u8; 6],
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
