use std::path::PathBuf;

/// Everything that can stop confinement; each names what and where.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("policy `{policy}`: rule `{rule}` needs one of [{needs}], and this host has none of them ({why})")]
    NoLayerForRule {
        policy: String,
        rule: String,
        needs: String,
        why: String,
    },
    #[error("cgroup v2 is not mounted (looked in /proc/self/mountinfo); Palisade places every workload in a v2 cgroup")]
    NoCgroup2,
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("BPF: {what}: {reason}")]
    Bpf { what: String, reason: String },
    #[error("Landlock: {0}")]
    Landlock(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("capabilities: {0}")]
    Caps(String),
    #[error("workload id `{0}` is not valid: use letters, digits, `-` and `_` (at most 128)")]
    BadId(String),
    #[error("workload `{0}` is already confined on this host")]
    AlreadyExists(String),
}

pub fn io(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> EnforceError {
    let path = path.into();
    move |source| EnforceError::Io { op, path, source }
}

pub fn bpf_err(what: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> EnforceError {
    let what = what.into();
    move |e| EnforceError::Bpf {
        what,
        reason: e.to_string(),
    }
}
