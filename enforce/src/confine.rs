//! What the workload's own process does between fork and execve. Everything
//! here was prepared in the parent; the child only makes system calls, in an
//! order where each step still has the privilege it needs.

use std::fs::File;
use std::io::Write;

use crate::caps_layer::{self, PreparedCaps};
use crate::landlock_layer::PreparedLandlock;
use crate::seccomp_layer::PreparedSeccomp;
use crate::EnforceError;

pub struct InProcess {
    /// cgroup.procs of the workload's cgroup: the child writes itself in first.
    pub cgroup_procs: Option<File>,
    pub caps: Option<PreparedCaps>,
    pub no_new_privs: bool,
    pub user: Option<(u32, u32)>,
    pub landlock: Option<PreparedLandlock>,
    pub seccomp: Option<PreparedSeccomp>,
}

impl InProcess {
    /// In the child, right before execve. On error the child must not exec.
    pub fn apply(&mut self) -> Result<(), EnforceError> {
        if let Some(f) = self.cgroup_procs.as_mut() {
            f.write_all(b"0").map_err(|e| EnforceError::Io {
                op: "join cgroup",
                path: "cgroup.procs".into(),
                source: e,
            })?;
        }
        if let Some(c) = &self.caps {
            caps_layer::drop_bounding(c)?;
        }
        // Landlock and seccomp need no_new_privs once CAP_SYS_ADMIN is gone;
        // setting it is never weaker than the policy asked.
        let needs_nnp = self.no_new_privs || self.landlock.is_some() || self.seccomp.is_some();
        if needs_nnp {
            nix::sys::prctl::set_no_new_privs()
                .map_err(|e| EnforceError::Caps(format!("set no_new_privs: {e}")))?;
        }
        if let Some((uid, gid)) = self.user {
            let gid = nix::unistd::Gid::from_raw(gid);
            nix::unistd::setgroups(&[gid])
                .map_err(|e| EnforceError::Caps(format!("setgroups: {e}")))?;
            nix::unistd::setresgid(gid, gid, gid)
                .map_err(|e| EnforceError::Caps(format!("setgid: {e}")))?;
            let uid = nix::unistd::Uid::from_raw(uid);
            nix::unistd::setresuid(uid, uid, uid)
                .map_err(|e| EnforceError::Caps(format!("setuid: {e}")))?;
        }
        if let Some(l) = self.landlock.take() {
            l.ruleset
                .restrict_self()
                .map_err(|e| EnforceError::Landlock(format!("restrict_self: {e}")))?;
        }
        if let Some(c) = &self.caps {
            caps_layer::apply_sets(c)?;
        }
        if let Some(s) = &self.seccomp {
            for p in &s.programs {
                seccompiler::apply_filter(p)
                    .map_err(|e| EnforceError::Seccomp(format!("install filter: {e}")))?;
            }
        }
        Ok(())
    }
}
