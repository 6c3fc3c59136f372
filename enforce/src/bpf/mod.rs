//! Loading, filling, attaching and pinning the workload's BPF programs.
//!
//! Every link and map is pinned under /sys/fs/bpf/palisade/<id>/, so the
//! confinement outlives the process that attached it (a crash of `palisade run`
//! or of the shim) until the workload is released.

pub mod abi;
pub mod tables;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use libbpf_rs::{Link, MapCore, MapFlags, Object, ObjectBuilder};
use palisade_policy::model::{DefaultAction, Mode};
use palisade_policy::plan::{Layer, Plan};
use tracing::{debug, warn};

use crate::cgroup::WorkloadCgroup;
use crate::error::{bpf_err, io};
use crate::host::HostLayers;
use crate::EnforceError;
use abi::*;
use tables::verdict_code;

pub const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/palisade.bpf.o"));
pub const PROBE_LSM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_lsm.bpf.o"));

pub const BPFFS: &str = "/sys/fs/bpf";
pub const PIN_ROOT: &str = "/sys/fs/bpf/palisade";

const SOCKET_PROGRAMS: &[&str] = &[
    "pal_connect4",
    "pal_connect6",
    "pal_sendmsg4",
    "pal_sendmsg6",
    "pal_sock_create",
];
const TRACING_PROGRAMS: &[&str] = &["pal_exec_guard", "pal_sys_exit"];
/// lsm_cgroup programs: attached to the workload's cgroup like the socket programs.
const LSM_PROGRAMS: &[&str] = &[
    "pal_lsm_bprm_check",
    "pal_lsm_mmap_file",
    "pal_lsm_file_mprotect",
    "pal_lsm_file_open",
    "pal_lsm_setuid",
    "pal_lsm_setgid",
];

/// libbpf's own messages go to `tracing` (debug), not straight to stderr:
/// probing a missing feature is expected and is reported by `palisade check`.
pub fn route_libbpf_logs() {
    fn forward(level: libbpf_rs::PrintLevel, msg: String) {
        match level {
            libbpf_rs::PrintLevel::Warn => tracing::debug!(target: "libbpf", "{}", msg.trim_end()),
            _ => tracing::trace!(target: "libbpf", "{}", msg.trim_end()),
        }
    }
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, forward)));
}

pub fn pin_dir(workload_id: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(workload_id)
}

/// bpffs must be mounted for pins; systemd mounts it, minimal hosts may not.
pub fn ensure_bpffs() -> Result<(), EnforceError> {
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines().any(|l| {
                let mut it = l.split(" - ");
                let left = it.next().unwrap_or_default();
                let fstype = it.next().and_then(|r| r.split_whitespace().next());
                fstype == Some("bpf") && left.split_whitespace().nth(4) == Some(BPFFS)
            })
        })
        .unwrap_or(false);
    if !mounted {
        nix::mount::mount(
            Some("bpf"),
            BPFFS,
            Some("bpf"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| EnforceError::Bpf {
            what: format!("mount bpffs at {BPFFS}"),
            reason: e.to_string(),
        })?;
        tracing::info!("mounted bpffs at {BPFFS}");
    }
    Ok(())
}

pub fn probe_lsm_cgroup() -> Result<(), String> {
    let open = ObjectBuilder::default()
        .open_memory(PROBE_LSM)
        .map_err(|e| e.to_string())?;
    open.load().map(|_| ()).map_err(|e| {
        let s = e.to_string();
        if s.contains("Operation not permitted") || s.contains("EPERM") || s.contains("-1") {
            "kernel refused program load (EPERM)".to_string()
        } else {
            s
        }
    })
}

fn open_with(programs: &[&str]) -> Result<libbpf_rs::OpenObject, libbpf_rs::Error> {
    let mut open = ObjectBuilder::default().open_memory(OBJECT)?;
    for mut p in open.progs_mut() {
        let name = p.name().to_string_lossy().to_string();
        p.set_autoload(programs.contains(&name.as_str()));
    }
    Ok(open)
}

pub fn probe_programs(programs: &[&str]) -> Result<(), String> {
    open_with(programs)
        .and_then(|o| o.load())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn default_code(d: DefaultAction) -> u8 {
    match d {
        DefaultAction::Allow => VERDICT_ALLOW,
        DefaultAction::Deny => VERDICT_DENY,
    }
}

/// The loaded object with its links; dropping it does not detach what is pinned.
pub struct AttachedBpf {
    pub object: Object,
    pub links: Vec<Link>,
    pub pin_dir: PathBuf,
    /// Exec rules that could not be resolved to a file (did not exist at start).
    pub unresolved_exec: Vec<String>,
}

/// What the tracing programs should watch besides exec.
pub struct Watch {
    /// Syscall number -> path argument index + 1 (7: no path).
    pub syscalls: BTreeMap<u32, u8>,
}

pub fn attach(
    plan: &Plan,
    workload_id: &str,
    cgroup: &WorkloadCgroup,
    host: &HostLayers,
    root: &Path,
    watch: &Watch,
) -> Result<AttachedBpf, EnforceError> {
    ensure_bpffs()?;
    let dir = pin_dir(workload_id);
    std::fs::create_dir_all(&dir).map_err(io("create pin dir", &dir))?;
    let result = attach_inner(plan, cgroup, host, root, watch, &dir);
    if result.is_err() {
        let _ = remove_pins(&dir);
    }
    result
}

fn attach_inner(
    plan: &Plan,
    cgroup: &WorkloadCgroup,
    host: &HostLayers,
    root: &Path,
    watch: &Watch,
    dir: &Path,
) -> Result<AttachedBpf, EnforceError> {
    let want_sock = host.has(Layer::CgroupSock)
        && (plan.egress.is_some() || plan.raw_sockets == DefaultAction::Deny);
    let want_tracing = host.has(Layer::ExecGuard);
    let exec_restricted = !plan.exec.rules.is_empty()
        || plan.exec.default == DefaultAction::Deny
        || plan.exec.anonymous != DefaultAction::Allow;
    let want_lsm = host.has(Layer::BpfLsm)
        && (exec_restricted || !plan.file.is_empty() || plan.privileges.block_setuid);
    let mut programs: Vec<&str> = Vec::new();
    if want_sock {
        programs.extend(SOCKET_PROGRAMS);
    }
    if want_tracing {
        programs.extend(TRACING_PROGRAMS);
    }
    if want_lsm {
        programs.extend(LSM_PROGRAMS);
    }
    let open = open_with(&programs).map_err(bpf_err("open palisade.bpf.o"))?;
    let mut object = open.load().map_err(bpf_err("load palisade.bpf.o"))?;

    let map = |name: &str| -> Result<libbpf_rs::Map<'_>, EnforceError> {
        object
            .maps()
            .find(|m| m.name() == name)
            .ok_or_else(|| EnforceError::Bpf {
                what: format!("map {name}"),
                reason: "not in object".into(),
            })
    };
    let update = |name: &str, key: &[u8], value: &[u8]| -> Result<(), EnforceError> {
        map(name)?
            .update(key, value, MapFlags::ANY)
            .map_err(bpf_err(format!("update map {name}")))
    };

    // Exec and file rules by file identity; directories match through the
    // ancestor walk, missing targets by path (BPF LSM only).
    let tables = tables::build(plan, root);
    let exec_guard_rules = plan
        .exec
        .rules
        .iter()
        .filter(|r| r.layers.contains(&Layer::ExecGuard))
        .count();
    if want_tracing || want_lsm {
        for (key, value) in &tables.exec_inodes {
            update("exec_rules", bytes_of(key), bytes_of(value))?;
        }
    }
    let mut unresolved_exec: Vec<String> = tables.unresolved.clone();
    if want_lsm {
        for (path, value) in &tables.exec_paths {
            if let Some(key) = PathKey::new(path) {
                update("exec_paths", bytes_of(&key), bytes_of(value))?;
                update("path_names", bytes_of(&NameKey::of_path(path)), &[1])?;
            }
        }
        for (key, value) in &tables.file_inodes {
            update("file_rules", bytes_of(key), bytes_of(value))?;
        }
        for (path, value) in &tables.file_paths {
            if let Some(key) = PathKey::new(path) {
                update("file_paths", bytes_of(&key), bytes_of(value))?;
                update("path_names", bytes_of(&NameKey::of_path(path)), &[1])?;
            }
        }
    } else {
        unresolved_exec.extend(tables.exec_paths.keys().cloned());
    }

    if want_sock {
        if let Some(e) = &plan.egress {
            for p in &e.prefixes {
                let key = PrefixKey {
                    prefixlen: p.prefix_len as u32,
                    addr: p.addr,
                };
                update("egress_prefixes", bytes_of(&key), bytes_of(&p.group))?;
            }
            for p in &e.ports {
                let key = PortKey {
                    group: p.group,
                    protocol: p.protocol,
                    pad: 0,
                    port: p.port,
                };
                let value = RuleRef {
                    rule: p.rule,
                    verdict: verdict_code(p.verdict) as u32,
                };
                update("egress_ports", bytes_of(&key), bytes_of(&value))?;
            }
        }
    }
    if want_tracing {
        for (nr, arg) in &watch.syscalls {
            update("watched_syscalls", bytes_of(nr), bytes_of(arg))?;
        }
    }

    let config = Config {
        cgroup_id: cgroup.id,
        cgroup_level: cgroup.level,
        egress_default: plan
            .egress
            .as_ref()
            .map_or(VERDICT_ALLOW, |e| default_code(e.default)),
        raw_sockets: default_code(plan.raw_sockets),
        exec_default: default_code(plan.exec.default),
        block_setid: u8::from(plan.privileges.block_setuid),
        audit_only: u8::from(plan.mode == Mode::Audit),
        exec_guard: u8::from(
            !want_lsm
                && (exec_guard_rules > 0
                    || plan.exec.default == DefaultAction::Deny
                    || plan.exec.anonymous != DefaultAction::Allow),
        ),
        lsm_exec: u8::from(want_lsm && exec_restricted),
        lsm_file: u8::from(want_lsm && !plan.file.is_empty()),
        path_rules: u8::from(
            want_lsm && !(tables.exec_paths.is_empty() && tables.file_paths.is_empty()),
        ),
        anon_exec: default_code(plan.exec.anonymous),
        setid_armed: 0,
        lsm: u8::from(want_lsm),
    };
    update("pal_config_map", bytes_of(&0u32), bytes_of(&config))?;

    let cgroup_dir = cgroup.dir_file()?;
    let mut links = Vec::new();
    for prog in object.progs_mut() {
        let name = prog.name().to_string_lossy().to_string();
        if !programs.contains(&name.as_str()) {
            continue;
        }
        let per_cgroup =
            SOCKET_PROGRAMS.contains(&name.as_str()) || LSM_PROGRAMS.contains(&name.as_str());
        let mut link = if per_cgroup {
            prog.attach_cgroup(cgroup_dir.as_raw_fd())
                .map_err(bpf_err(format!(
                    "attach {name} to {}",
                    cgroup.path.display()
                )))?
        } else {
            prog.attach().map_err(bpf_err(format!("attach {name}")))?
        };
        let pin = dir.join(&name);
        link.pin(&pin)
            .map_err(bpf_err(format!("pin {}", pin.display())))?;
        debug!(program = %name, pin = %pin.display(), "attached and pinned");
        links.push(link);
    }
    // The ring buffer and config stay reachable for readers after a restart.
    for name in ["events", "pal_config_map"] {
        let mut m = object
            .maps_mut()
            .find(|m| m.name() == name)
            .ok_or_else(|| EnforceError::Bpf {
                what: format!("map {name}"),
                reason: "not in object".into(),
            })?;
        let pin = dir.join(name);
        m.pin(&pin)
            .map_err(bpf_err(format!("pin {}", pin.display())))?;
    }
    if !unresolved_exec.is_empty() {
        warn!(paths = ?unresolved_exec, "rules on paths that do not exist here are not carried by the BPF programs");
    }
    Ok(AttachedBpf {
        object,
        links,
        pin_dir: dir.to_path_buf(),
        unresolved_exec,
    })
}

/// Unpins everything of a workload; links detach once no process holds them.
pub fn remove_pins(dir: &Path) -> Result<(), EnforceError> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(io("read pin dir", dir))? {
        let entry = entry.map_err(io("read pin dir", dir))?;
        std::fs::remove_file(entry.path()).map_err(io("unpin", entry.path()))?;
    }
    std::fs::remove_dir(dir).map_err(io("remove pin dir", dir))?;
    let _ = std::fs::remove_dir(PIN_ROOT);
    Ok(())
}
