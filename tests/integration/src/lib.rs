//! Shared harness for the end-to-end tests: where the binaries are, scratch
//! directories, loopback listeners, and counting what the kernel still holds.

pub mod containerd;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

pub use serde_json::Value;

/// target/<profile>/, where cargo put the probe and `palisade`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable dir");
    // Tests run from target/<profile>/deps, binaries from target/<profile>.
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

pub fn palisade() -> PathBuf {
    let p = bin_dir().join("palisade");
    assert!(
        p.exists(),
        "{} missing: run `cargo build --workspace` first (make test does)",
        p.display()
    );
    p
}

pub fn probe() -> PathBuf {
    let p = bin_dir().join("palisade-probe");
    assert!(
        p.exists(),
        "{} missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// A scratch directory readable by every user (setuid tests run as nobody).
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("palisade-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        set_mode(&dir, 0o755);
        Self { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `palisade run` with this scratch dir's events and state; `policy: None` runs the command bare.
pub fn run_confined(s: &Scratch, policy: Option<&Path>, extra: &[&str], cmd: &[&str]) -> Output {
    let mut c = match policy {
        Some(p) => {
            let mut c = Command::new(palisade());
            c.arg("run")
                .arg("--policy")
                .arg(p)
                .arg("--events")
                .arg(s.path("events.jsonl"))
                .arg("--state-dir")
                .arg(s.path("state"))
                .args(extra)
                .arg("--");
            c.args(cmd);
            c
        }
        None => {
            let mut c = Command::new(cmd[0]);
            c.args(&cmd[1..]);
            c
        }
    };
    c.output().expect("spawn")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A TCP listener on a loopback address that accepts in the background,
/// shared by every test of the process (the accept thread keeps it open).
pub fn listen(addr: &str) {
    static LISTENING: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut listening = LISTENING.lock().unwrap_or_else(|e| e.into_inner());
    if listening.iter().any(|a| a == addr) {
        return;
    }
    let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("listen on {addr}: {e}"));
    std::thread::spawn(move || for _ in l.incoming() {});
    listening.push(addr.to_string());
}

/// Kernel objects Palisade may have left: workload cgroups, bpffs pins, mounts.
#[derive(Debug, PartialEq, Eq)]
pub struct KernelObjects {
    pub cgroups: usize,
    pub pins: usize,
    pub mounts: usize,
}

pub fn count_kernel_objects() -> KernelObjects {
    let count = |p: &str| std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0);
    KernelObjects {
        cgroups: count("/sys/fs/cgroup/unified/palisade") + count("/sys/fs/cgroup/palisade"),
        pins: count("/sys/fs/bpf/palisade"),
        mounts: std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| m.lines().count())
            .unwrap_or(0),
    }
}

/// The events of a kind with a given field value.
pub fn find<'a>(events: &'a [Value], kind: &str, field: &str, value: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| e["kind"] == kind && e[field].as_str() == Some(value))
}
