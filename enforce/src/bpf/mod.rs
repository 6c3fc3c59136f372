//! Loading, filling, attaching and pinning the workload's BPF programs.
//!
//! Every link and map is pinned under /sys/fs/bpf/palisade/<id>/, so the
//! confinement outlives the process that attached it (a crash of `palisade run`
//! or of the shim) until the workload is released.

pub mod abi;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use libbpf_rs::{Link, MapCore, MapFlags, Object, ObjectBuilder};
use palisade_policy::model::{DefaultAction, Mode, Target};
use palisade_policy::plan::{Layer, Plan, RuleVerdict};
use tracing::{debug, warn};

use crate::cgroup::WorkloadCgroup;
use crate::error::{bpf_err, io};
use crate::host::HostLayers;
use crate::EnforceError;
use abi::*;

pub const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/palisade.bpf.o"));
const PROBE_LSM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_lsm.bpf.o"));

pub const BPFFS: &str = "/sys/fs/bpf";
pub const PIN_ROOT: &str = "/sys/fs/bpf/palisade";

const SOCKET_PROGRAMS: &[&str] = &[
    "pal_connect4",
    "pal_connect6",
    "pal_sendmsg4",
    "pal_sendmsg6",
    "pal_sock_create",
];
const TRACING_PROGRAMS: &[&str] = &["pal_exec_guard", "pal_sys_enter", "pal_sys_exit"];

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

fn kernel_dev(st_dev: u64) -> u64 {
    let major = libc::major(st_dev) as u64;
    let minor = libc::minor(st_dev) as u64;
    (major << 20) | minor
}

fn verdict_code(v: RuleVerdict) -> u8 {
    match v {
        RuleVerdict::Allow => VERDICT_ALLOW,
        RuleVerdict::Deny => VERDICT_DENY,
        RuleVerdict::Audit => VERDICT_AUDIT,
    }
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
    let mut programs: Vec<&str> = Vec::new();
    if want_sock {
        programs.extend(SOCKET_PROGRAMS);
    }
    if want_tracing {
        programs.extend(TRACING_PROGRAMS);
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

    // Exec rules by file identity; directories match through the ancestor walk.
    let mut unresolved_exec = Vec::new();
    let exec_guard_rules = plan
        .exec
        .rules
        .iter()
        .filter(|r| r.layers.contains(&Layer::ExecGuard))
        .count();
    for (i, r) in plan.exec.rules.iter().enumerate() {
        let location = r.target.location();
        let host_path = root.join(location.trim_start_matches('/'));
        let meta = match std::fs::metadata(&host_path) {
            Ok(m) => m,
            Err(_) => {
                unresolved_exec.push(location.to_string());
                continue;
            }
        };
        let kind = match &r.target {
            Target::Path { .. } => MATCH_FILE,
            Target::Dir {
                recursive: true, ..
            } => MATCH_DIR_TREE,
            Target::Dir { .. } => MATCH_DIR_DIRECT,
        };
        let key = InodeKey {
            dev: kernel_dev(meta.dev()),
            ino: meta.ino(),
        };
        let value = InodeRule {
            rule: i as u32,
            verdict: verdict_code(r.verdict),
            kind,
            pad: [0; 2],
        };
        if want_tracing {
            update("exec_rules", bytes_of(&key), bytes_of(&value))?;
        }
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
        exec_guard: u8::from(exec_guard_rules > 0 || plan.exec.default == DefaultAction::Deny),
        pad: [0; 6],
    };
    update("pal_config_map", bytes_of(&0u32), bytes_of(&config))?;

    let cgroup_dir = cgroup.dir_file()?;
    let mut links = Vec::new();
    for prog in object.progs_mut() {
        let name = prog.name().to_string_lossy().to_string();
        if !programs.contains(&name.as_str()) {
            continue;
        }
        let mut link = if SOCKET_PROGRAMS.contains(&name.as_str()) {
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
        warn!(paths = ?unresolved_exec, "exec rules for paths that do not exist are carried by Landlock only");
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
