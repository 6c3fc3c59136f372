//! The plan's seccomp filters for this architecture, compiled in the parent;
//! the child only installs them (last, right before execve).

use std::collections::BTreeSet;

use palisade_policy::plan::Plan;
use palisade_policy::seccomp_profile::{Arch, FilterSpec};
use seccompiler::BpfProgram;

use crate::EnforceError;

pub struct PreparedSeccomp {
    pub programs: Vec<BpfProgram>,
    pub specs: Vec<FilterSpec>,
}

pub fn prepare(
    plan: &Plan,
    caps: &BTreeSet<String>,
    with_setid_deny: bool,
) -> Result<Option<PreparedSeccomp>, EnforceError> {
    let specs = plan.seccomp_filters(caps, with_setid_deny);
    if specs.is_empty() {
        return Ok(None);
    }
    let arch = Arch::host().ok_or_else(|| {
        EnforceError::Seccomp(format!(
            "unsupported architecture {}",
            std::env::consts::ARCH
        ))
    })?;
    let mut programs = Vec::new();
    for spec in &specs {
        if let Some(p) = spec
            .compile(arch)
            .map_err(|e| EnforceError::Seccomp(e.to_string()))?
        {
            programs.push(p);
        }
    }
    Ok(Some(PreparedSeccomp { programs, specs }))
}

/// The syscall number of `name` on this architecture, read from a one-rule
/// filter compiled by seccompiler (its tables are the source of truth).
pub fn syscall_number(name: &str) -> Option<u32> {
    let arch = Arch::host()?;
    let spec = FilterSpec {
        name: "probe".into(),
        mismatch: palisade_policy::seccomp_profile::Verdict::Allow,
        matched: palisade_policy::seccomp_profile::Verdict::Errno(1),
        rules: [(name.to_string(), vec![Vec::new()])].into_iter().collect(),
    };
    let prog = spec.compile(arch).ok()??;
    // After `ld [0]` (the syscall number), the first `jeq #k` compares against it.
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    let start = prog.iter().position(|i| i.code == LD_W_ABS && i.k == 0)?;
    prog[start..].iter().find(|i| i.code == JEQ_K).map(|i| i.k)
}

#[cfg(test)]
mod tests {
    #[test]
    fn resolves_syscall_numbers_for_this_arch() {
        assert_eq!(
            super::syscall_number("ptrace"),
            Some(libc::SYS_ptrace as u32)
        );
        assert_eq!(
            super::syscall_number("setresuid"),
            Some(libc::SYS_setresuid as u32)
        );
    }
}
