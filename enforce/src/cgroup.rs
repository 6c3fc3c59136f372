//! The workload's own cgroup v2 directory, under a `palisade` subtree of the
//! v2 mount (on hybrid hosts: /sys/fs/cgroup/unified/palisade/<id>).
//! BPF cgroup programs attach here; the cgroup id scopes the tracing programs.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::io;
use crate::EnforceError;

pub const SUBTREE: &str = "palisade";

#[derive(Debug)]
pub struct WorkloadCgroup {
    pub path: PathBuf,
    /// The kernel's cgroup id: the directory's inode number on cgroup2.
    pub id: u64,
    /// Depth below the v2 root, for bpf_get_current_ancestor_cgroup_id().
    pub level: u32,
}

pub fn path_for(root: &Path, workload_id: &str) -> PathBuf {
    root.join(SUBTREE).join(workload_id)
}

impl WorkloadCgroup {
    pub fn create(root: &Path, workload_id: &str) -> Result<Self, EnforceError> {
        let parent = root.join(SUBTREE);
        if !parent.exists() {
            std::fs::create_dir(&parent).or_else(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(io("create cgroup", &parent)(e))
                }
            })?;
        }
        let path = parent.join(workload_id);
        std::fs::create_dir(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                EnforceError::AlreadyExists(workload_id.to_string())
            } else {
                io("create cgroup", &path)(e)
            }
        })?;
        Self::open(root, workload_id)
    }

    pub fn open(root: &Path, workload_id: &str) -> Result<Self, EnforceError> {
        let path = path_for(root, workload_id);
        let meta = std::fs::metadata(&path).map_err(io("stat cgroup", &path))?;
        let level = path
            .strip_prefix(root)
            .map(|rel| rel.components().count() as u32)
            .unwrap_or(2);
        Ok(Self {
            path,
            id: meta.ino(),
            level,
        })
    }

    /// Opened in the parent so the child only has to write "0" (itself) before exec.
    pub fn procs_file(&self) -> Result<File, EnforceError> {
        let p = self.path.join("cgroup.procs");
        OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(io("open", &p))
    }

    pub fn dir_file(&self) -> Result<File, EnforceError> {
        File::open(&self.path).map_err(io("open cgroup", &self.path))
    }

    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kills what is left and removes the directory (and the subtree when empty).
    pub fn remove(&self) -> Result<(), EnforceError> {
        for attempt in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            if attempt == 0 && std::fs::write(self.path.join("cgroup.kill"), "1").is_ok() {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut last = None;
        for _ in 0..50 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    last = None;
                    break;
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        if let Some(e) = last {
            return Err(io("remove cgroup", &self.path)(e));
        }
        if let Some(parent) = self.path.parent() {
            // Another workload may still use the subtree; then it stays.
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }
}
