//! The last step inside the container's init (and every exec'd process):
//! after libcontainer's pivot_root and capability drop, right before execve.
//! Joins the v2 cgroup (exec'd processes), applies Landlock, then one stack
//! of seccomp filters: the spec's own profile (libcontainer without
//! libseccomp would ignore it) and the policy's filters.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use palisade_enforce::{caps_layer, landlock_layer};
use palisade_policy::plan::Plan;
use palisade_policy::seccomp_profile::{Arch, SeccompProfile};

#[derive(Clone)]
pub struct PalisadeExecutor {
    /// The workload's plan and the node baseline: each is applied in full, so
    /// a workload policy can only narrow what the baseline allows.
    pub plans: Vec<Plan>,
    /// The spec's `linux.seccomp`, already decoded (fail closed happened before build).
    pub spec_seccomp: Option<SeccompProfile>,
    /// Without BPF LSM, `blockSetuid` denies the set*id family in seccomp.
    pub setid_by_seccomp: bool,
    /// cgroup.procs of the container's v2 cgroup, for processes added by exec.
    pub cgroup_procs_fd: Option<RawFd>,
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExecutorError {
    let msg = format!("palisade: {what}: {e}; the process is not started");
    let _ = writeln!(std::io::stderr(), "{msg}");
    ExecutorError::Other(msg)
}

impl PalisadeExecutor {
    fn confine(&self) -> Result<(), ExecutorError> {
        if let Some(fd) = self.cgroup_procs_fd {
            // SAFETY: the helper opened this fd for us and nothing else owns it here.
            let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
            f.write_all(b"0")
                .map_err(|e| fail("join the container's v2 cgroup", e))?;
        }
        let caps: BTreeSet<String> = caps_layer::current_permitted();
        let mut specs = self
            .spec_seccomp
            .as_ref()
            .map(|p| p.filter_specs(&caps))
            .unwrap_or_default();
        for plan in &self.plans {
            if let Some(l) = landlock_layer::prepare(plan, std::path::Path::new("/"))
                .map_err(|e| fail("prepare Landlock", e))?
            {
                l.ruleset
                    .restrict_self()
                    .map_err(|e| fail("apply Landlock", e))?;
            }
            if plan.privileges.no_new_privileges {
                nix::sys::prctl::set_no_new_privs().map_err(|e| fail("set no_new_privs", e))?;
            }
            specs.extend(plan.seccomp_filters(&caps, self.setid_by_seccomp));
        }
        if specs.is_empty() {
            return Ok(());
        }
        // Installing a filter without CAP_SYS_ADMIN needs no_new_privs.
        nix::sys::prctl::set_no_new_privs().map_err(|e| fail("set no_new_privs", e))?;
        let arch = Arch::host().ok_or_else(|| fail("seccomp", "unsupported architecture"))?;
        for spec in specs {
            if let Some(prog) = spec.compile(arch).map_err(|e| fail("compile seccomp", e))? {
                seccompiler::apply_filter(&prog).map_err(|e| fail("install seccomp", e))?;
            }
        }
        Ok(())
    }
}

impl Executor for PalisadeExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        self.confine()?;
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}
