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

#[derive(Debug, Clone)]
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

    /// A container's v2 cgroup at the same relative path its runtime uses
    /// (runc puts `/default/<id>` at `<v2>/default/<id>` on hybrid hosts too).
    /// Returns the directories this call created, deepest last, to remove on delete.
    pub fn ensure_at(root: &Path, relative: &str) -> Result<(Self, Vec<PathBuf>), EnforceError> {
        let relative = relative.trim_start_matches('/');
        if relative.is_empty() || relative.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(EnforceError::Io {
                op: "cgroup path",
                path: PathBuf::from(relative),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a normal relative path",
                ),
            });
        }
        let mut created = Vec::new();
        let mut path = root.to_path_buf();
        for component in relative.split('/') {
            path.push(component);
            match std::fs::create_dir(&path) {
                Ok(()) => created.push(path.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("create cgroup", &path)(e)),
            }
        }
        let cg = Self::open_path(root, path)?;
        Ok((cg, created))
    }

    pub fn open_path(root: &Path, path: PathBuf) -> Result<Self, EnforceError> {
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

    /// Moves a process (and so its future children) into this cgroup.
    pub fn add_pid(&self, pid: i32) -> Result<(), EnforceError> {
        let p = self.path.join("cgroup.procs");
        std::fs::write(&p, pid.to_string()).map_err(io("move process into", &p))
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

    /// Kills what is left and removes the directories `ensure_at` created, deepest first.
    pub fn remove_created(&self, created: &[PathBuf]) -> Result<(), EnforceError> {
        if created.is_empty() {
            return Ok(());
        }
        self.kill_all();
        for dir in created.iter().rev() {
            remove_dir_retrying(dir)?;
        }
        Ok(())
    }

    fn kill_all(&self) {
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
    }

    /// Kills what is left and removes the directory (and the subtree when empty).
    pub fn remove(&self) -> Result<(), EnforceError> {
        self.kill_all();
        remove_dir_retrying(&self.path)?;
        if let Some(parent) = self.path.parent() {
            // Another workload may still use the subtree; then it stays.
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }
}

/// rmdir on a cgroup fails with EBUSY for a moment after its last process exits.
fn remove_dir_retrying(dir: &Path) -> Result<(), EnforceError> {
    let mut last = None;
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    match last {
        Some(e) => Err(io("remove cgroup", dir)(e)),
        None => Ok(()),
    }
}
