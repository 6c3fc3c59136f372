//! A confined workload's life on this host: prepare (cgroup, BPF, the
//! in-process layers), then the caller forks and execs, then release.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use palisade_policy::model::DefaultAction;
use palisade_policy::plan::{Layer, Plan, SETID_SYSCALLS};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::bpf::{self, AttachedBpf, Watch};
use crate::cgroup::WorkloadCgroup;
use crate::confine::InProcess;
use crate::events::{Attributor, Event, WorkloadInfo};
use crate::host::HostLayers;
use crate::layers::{self, Assignment};
use crate::{caps_layer, landlock_layer, seccomp_layer, EnforceError};

pub const DEFAULT_STATE_DIR: &str = "/run/palisade";

pub struct WorkloadSpec<'a> {
    pub id: String,
    pub plan: &'a Plan,
    pub info: WorkloadInfo,
    /// The workload's root file system as seen from here ("/" for `palisade run`).
    pub root: PathBuf,
    pub user: Option<(u32, u32)>,
    /// Capabilities the workload would have without the policy.
    pub base_caps: BTreeSet<String>,
    pub state_dir: PathBuf,
    pub events_path: PathBuf,
}

/// What `palisade status` and a later release need to know, kept under `state_dir`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadState {
    pub id: String,
    pub policy: String,
    pub policy_digest: String,
    /// annotation, label, default, baseline, or file (`palisade run`).
    #[serde(default)]
    pub policy_source: String,
    pub layers: BTreeMap<String, usize>,
    pub cgroup: PathBuf,
    pub pin_dir: PathBuf,
    pub events_path: PathBuf,
    pub started: String,
}

pub struct Confinement {
    pub id: String,
    pub cgroup: WorkloadCgroup,
    pub bpf: Option<AttachedBpf>,
    pub in_process: InProcess,
    pub assignment: Assignment,
    pub denied_syscalls: Vec<(u32, String)>,
    pub execve_nrs: Vec<u32>,
    pub landlock_rules: usize,
    pub seccomp_filters: usize,
    pub state_path: PathBuf,
}

/// Ids name bpffs pins, which may not contain a dot.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// Syscalls whose EACCES/EPERM the observer reports, with their path argument.
/// With BPF LSM the path syscalls are left out: its programs report their own
/// refusals, and an EACCES seen afterwards would be misread as Landlock's.
fn watched_syscalls(denied: &[(u32, String)], lsm: bool) -> (BTreeMap<u32, u8>, Vec<u32>) {
    let mut m = BTreeMap::new();
    let mut execve = Vec::new();
    #[cfg(target_arch = "x86_64")]
    if !lsm {
        for (nr, arg) in [
            (libc::SYS_open, 1u8),
            (libc::SYS_creat, 1),
            (libc::SYS_truncate, 1),
            (libc::SYS_mkdir, 1),
            (libc::SYS_unlink, 1),
            (libc::SYS_execve, 1),
        ] {
            m.insert(nr as u32, arg);
        }
        execve.push(libc::SYS_execve as u32);
    }
    if !lsm {
        for (nr, arg) in [
            (libc::SYS_openat, 2u8),
            (libc::SYS_openat2, 2),
            (libc::SYS_mkdirat, 2),
            (libc::SYS_unlinkat, 2),
            (libc::SYS_execveat, 2),
        ] {
            m.insert(nr as u32, arg);
        }
        execve.push(libc::SYS_execveat as u32);
    }
    // socket(2) keeps its type: a raw socket refused for lack of CAP_NET_RAW is reported.
    m.insert(libc::SYS_socket as u32, 10);
    for (nr, _) in denied {
        m.entry(*nr).or_insert(7);
    }
    (m, execve)
}

/// What the denial observer watches for a plan, and how to name what it sees.
pub struct ObserverTables {
    pub denied_syscalls: Vec<(u32, String)>,
    pub watched: BTreeMap<u32, u8>,
    pub execve_nrs: Vec<u32>,
}

pub fn observer_tables(plan: &Plan, host: &HostLayers, seccomp_applied: bool) -> ObserverTables {
    let setid_by_seccomp = plan.privileges.block_setuid && !host.has(Layer::BpfLsm);
    let mut denied_syscalls: Vec<(u32, String)> = Vec::new();
    if seccomp_applied {
        let names = plan
            .seccomp
            .deny
            .iter()
            .map(|r| r.name.as_str())
            .chain(SETID_SYSCALLS.iter().copied().filter(|_| setid_by_seccomp));
        for name in names {
            if let Some(nr) = seccomp_layer::syscall_number(name) {
                denied_syscalls.push((nr, name.to_string()));
            }
        }
    }
    let (watched, execve_nrs) = watched_syscalls(&denied_syscalls, host.has(Layer::BpfLsm));
    ObserverTables {
        denied_syscalls,
        watched,
        execve_nrs,
    }
}

pub fn prepare(spec: &WorkloadSpec<'_>, host: &HostLayers) -> Result<Confinement, EnforceError> {
    if !valid_id(&spec.id) {
        return Err(EnforceError::BadId(spec.id.clone()));
    }
    let plan = spec.plan;
    // Everything that can fail on the policy fails before a kernel object exists.
    let assignment = layers::assign(plan, host)?;
    let cgroup_root = host.cgroup2.clone().ok_or(EnforceError::NoCgroup2)?;

    let caps = caps_layer::prepare(plan, &spec.base_caps);
    let effective = plan.effective_caps(&spec.base_caps);
    let setid_by_seccomp = plan.privileges.block_setuid && !host.has(Layer::BpfLsm);
    let seccomp = if host.has(Layer::Seccomp) {
        seccomp_layer::prepare(plan, &effective, setid_by_seccomp)?
    } else {
        None
    };
    // With BPF LSM the exec and file rules are its own (plan::carriers).
    let landlock = if host.has(Layer::Landlock) && !host.has(Layer::BpfLsm) {
        landlock_layer::prepare(plan, &spec.root)?
    } else {
        None
    };
    let ObserverTables {
        denied_syscalls,
        watched: syscalls,
        execve_nrs,
    } = observer_tables(plan, host, seccomp.is_some());

    let cgroup = WorkloadCgroup::create(&cgroup_root, &spec.id)?;
    let result = (|| {
        let bpf =
            if host.has(Layer::CgroupSock) || host.has(Layer::ExecGuard) || host.has(Layer::BpfLsm)
            {
                Some(bpf::attach(
                    plan,
                    &spec.id,
                    &cgroup,
                    host,
                    &spec.root,
                    &Watch { syscalls },
                )?)
            } else {
                None
            };
        let cgroup_procs = Some(cgroup.procs_file()?);
        Ok::<_, EnforceError>((bpf, cgroup_procs))
    })();
    let (bpf, cgroup_procs) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = bpf::remove_pins(&bpf::pin_dir(&spec.id));
            let _ = cgroup.remove();
            return Err(e);
        }
    };
    let landlock_rules = landlock.as_ref().map_or(0, |l| l.rules);
    let seccomp_filters = seccomp.as_ref().map_or(0, |s| s.programs.len());
    let state_path = spec.state_dir.join(format!("{}.json", spec.id));
    let mut confinement = Confinement {
        id: spec.id.clone(),
        cgroup,
        bpf,
        in_process: InProcess {
            cgroup_procs,
            caps,
            no_new_privs: plan.privileges.no_new_privileges,
            user: spec.user,
            landlock,
            seccomp,
        },
        assignment,
        denied_syscalls,
        execve_nrs,
        landlock_rules,
        seccomp_filters,
        state_path,
    };
    let state = WorkloadState {
        id: spec.id.clone(),
        policy: spec.info.policy.clone(),
        policy_digest: spec.info.policy_digest.clone(),
        policy_source: spec
            .info
            .policy_source
            .clone()
            .unwrap_or_else(|| "file".into()),
        layers: confinement.layer_counts(),
        cgroup: confinement.cgroup.path.clone(),
        pin_dir: bpf::pin_dir(&spec.id),
        events_path: spec.events_path.clone(),
        started: crate::events::now_rfc3339(),
    };
    let written = std::fs::create_dir_all(&spec.state_dir).and_then(|_| {
        std::fs::write(
            &confinement.state_path,
            serde_json::to_vec_pretty(&state).map_err(std::io::Error::other)?,
        )
    });
    if let Err(e) = written {
        let err = crate::error::io("write state", &confinement.state_path)(e);
        confinement.release_kernel_objects();
        return Err(err);
    }
    info!(id = %spec.id, policy = %spec.info.policy, "workload prepared");
    Ok(confinement)
}

impl Confinement {
    pub fn layer_counts(&self) -> BTreeMap<String, usize> {
        let mut m: BTreeMap<String, usize> = self
            .assignment
            .rules_per_layer
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        if self.landlock_rules > 0 {
            m.insert("landlock-grants".into(), self.landlock_rules);
        }
        if self.seccomp_filters > 0 {
            m.insert("seccomp-filters".into(), self.seccomp_filters);
        }
        m
    }

    pub fn confined_event(&self, info: &WorkloadInfo) -> Event {
        let mut ev = info.event("confined");
        ev.layers = serde_json::to_value(self.layer_counts()).ok();
        if !self.assignment.skipped.is_empty() {
            ev.skipped = serde_json::to_value(&self.assignment.skipped).ok();
        }
        ev
    }

    pub fn attributor<'a>(&self, plan: &'a Plan, info: &'a WorkloadInfo) -> Attributor<'a> {
        Attributor {
            plan,
            info,
            denied_syscalls: self.denied_syscalls.clone(),
            execve_nrs: self.execve_nrs.clone(),
            clock_offset_ns: crate::events::clock_offset_ns(),
        }
    }

    fn release_kernel_objects(&mut self) {
        if let Some(b) = self.bpf.take() {
            let dir = b.pin_dir.clone();
            drop(b);
            if let Err(e) = bpf::remove_pins(&dir) {
                warn!(error = %e, "unpin");
            }
        }
        if let Err(e) = self.cgroup.remove() {
            warn!(error = %e, "remove cgroup");
        }
    }

    /// Detaches everything and removes the cgroup and the state file.
    pub fn release(mut self) {
        self.release_kernel_objects();
        let _ = std::fs::remove_file(&self.state_path);
    }
}

pub fn list_states(state_dir: &Path) -> Vec<WorkloadState> {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}

/// Releases a workload by its recorded state (after its supervisor died).
pub fn release_state(state: &WorkloadState, state_dir: &Path) -> Result<(), EnforceError> {
    bpf::remove_pins(&state.pin_dir)?;
    if let (Some(root), Some(id)) = (
        state.cgroup.parent().and_then(|p| p.parent()),
        state.cgroup.file_name(),
    ) {
        if let Ok(cg) = WorkloadCgroup::open(root, &id.to_string_lossy()) {
            cg.remove()?;
        }
    }
    let _ = std::fs::remove_file(state_dir.join(format!("{}.json", state.id)));
    Ok(())
}

/// Whether a workload's cgroup has no processes left.
pub fn is_idle(state: &WorkloadState) -> bool {
    std::fs::read_to_string(state.cgroup.join("cgroup.procs"))
        .map(|s| s.trim().is_empty())
        .unwrap_or(true)
}

pub fn uses_exec_allowlist(plan: &Plan) -> bool {
    plan.exec.default == DefaultAction::Deny
}
