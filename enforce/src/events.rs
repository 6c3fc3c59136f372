//! Events: one JSON object per line (INTERFACE.md, "Events"), appended to
//! `events_path`. Kernel reports arrive through the BPF ring buffer and are
//! attributed to the plan's rules here.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use palisade_policy::model::{Access, DefaultAction};
use palisade_policy::plan::{Plan, RuleInfo, RuleVerdict, SETID_SYSCALLS};
use serde::{Deserialize, Serialize};

use crate::bpf::abi::*;

pub const DEFAULT_EVENTS_PATH: &str = "/var/log/palisade/events.jsonl";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub time: String,
    pub kind: String,
    pub container_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub policy_digest: String,
    /// Where the policy came from: annotation, label, default, baseline, file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// `confined`: layer name -> rule count, and rules skipped under best-effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<serde_json::Value>,
}

/// Who the workload is; every event repeats it.
#[derive(Debug, Clone, Default)]
pub struct WorkloadInfo {
    pub container_id: String,
    pub sandbox_id: Option<String>,
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
    pub container_name: Option<String>,
    pub image: Option<String>,
    pub policy: String,
    pub policy_digest: String,
    pub policy_source: Option<String>,
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl WorkloadInfo {
    pub fn event(&self, kind: &str) -> Event {
        Event {
            time: now_rfc3339(),
            kind: kind.into(),
            container_id: self.container_id.clone(),
            sandbox_id: self.sandbox_id.clone(),
            pod: self.pod.clone(),
            pod_namespace: self.pod_namespace.clone(),
            container_name: self.container_name.clone(),
            image: self.image.clone(),
            policy: self.policy.clone(),
            policy_digest: self.policy_digest.clone(),
            policy_source: self.policy_source.clone(),
            ..Default::default()
        }
    }
}

/// Appends whole lines; O_APPEND keeps concurrent writers' lines intact.
pub struct EventSink {
    path: PathBuf,
}

impl EventSink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, ev: &Event) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut line = serde_json::to_vec(ev).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&line)
    }
}

pub fn read_events(path: &Path) -> std::io::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Turns a ring-buffer record into an event, or `None` when it is not a
/// Palisade decision (e.g. an EACCES from file permissions, not a rule).
pub struct Attributor<'a> {
    pub plan: &'a Plan,
    pub info: &'a WorkloadInfo,
    /// (syscall number, name) of the seccomp deny rules and set*id family.
    pub denied_syscalls: Vec<(u32, String)>,
    pub execve_nrs: Vec<u32>,
    pub clock_offset_ns: i128,
}

fn addr_string(addr: [u8; 16], port: u16) -> String {
    let v6 = Ipv6Addr::from(addr);
    let ip: IpAddr = match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    };
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

fn apply_rule(ev: &mut Event, rule: &RuleInfo) {
    ev.rule_id = Some(rule.id.clone());
    ev.severity = Some(rule.severity);
    ev.tags = rule.tags.clone();
    ev.message = rule.message.clone();
}

/// Whether the process still has CAP_NET_RAW in its effective set (unknown: assume yes).
fn holds_net_raw(pid: u32) -> bool {
    const CAP_NET_RAW: u32 = 13;
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_none_or(|eff| eff & (1 << CAP_NET_RAW) != 0)
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC, to date kernel timestamps.
pub fn clock_offset_ns() -> i128 {
    let rt = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME).ok();
    let mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok();
    match (rt, mono) {
        (Some(r), Some(m)) => {
            (r.tv_sec() as i128 * 1_000_000_000 + r.tv_nsec() as i128)
                - (m.tv_sec() as i128 * 1_000_000_000 + m.tv_nsec() as i128)
        }
        _ => 0,
    }
}

impl Attributor<'_> {
    fn time_of(&self, ktime_ns: u64) -> String {
        let ns = ktime_ns as i128 + self.clock_offset_ns;
        time::OffsetDateTime::from_unix_timestamp_nanos(ns)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(now_rfc3339)
    }

    pub fn attribute(&self, raw: &RawEvent) -> Option<Event> {
        let audit = raw.verdict == VERDICT_AUDIT as u32;
        let mut ev = self.info.event(if audit { "audit" } else { "denial" });
        ev.time = self.time_of(raw.ktime_ns);
        ev.pid = Some(raw.pid);
        ev.ppid = Some(raw.ppid);
        ev.uid = Some(raw.uid);
        ev.comm = Some(raw.comm_str());
        ev.exe = std::fs::read_link(format!("/proc/{}/exe", raw.pid))
            .ok()
            .map(|p| p.display().to_string());
        ev.action = Some(if audit { "audit" } else { "block" }.into());
        ev.result = Some(if audit { "allowed" } else { "denied" }.into());
        match raw.kind {
            EV_CONNECT | EV_SENDMSG => {
                ev.layer = Some("cgroup-sock".into());
                ev.operation = Some("network".into());
                ev.access = Some(
                    if raw.kind == EV_CONNECT {
                        "connect"
                    } else {
                        "sendmsg"
                    }
                    .into(),
                );
                ev.target = Some(addr_string(raw.addr, raw.port));
                match self
                    .plan
                    .egress
                    .as_ref()
                    .and_then(|e| e.rules.get(raw.rule as usize))
                {
                    Some(r) => apply_rule(&mut ev, &r.rule),
                    None => ev.rule_id = Some("network.egress.default".into()),
                }
            }
            EV_SOCK_CREATE => {
                ev.layer = Some("cgroup-sock".into());
                ev.operation = Some("network".into());
                ev.access = Some("socket".into());
                ev.target = Some(
                    if raw.family == 17 {
                        "packet socket"
                    } else {
                        "raw socket"
                    }
                    .into(),
                );
                ev.rule_id = Some("network.rawSockets".into());
            }
            EV_EXEC | EV_LSM_EXEC => {
                ev.layer = Some(
                    if raw.kind == EV_LSM_EXEC {
                        "bpf-lsm"
                    } else {
                        "exec-guard"
                    }
                    .into(),
                );
                ev.operation = Some(
                    if raw.arg & EXEC_SETID != 0 {
                        "setuid"
                    } else {
                        "exec"
                    }
                    .into(),
                );
                ev.access = Some(
                    if raw.arg & EXEC_MAPPING != 0 {
                        "mmap"
                    } else {
                        "exec"
                    }
                    .into(),
                );
                ev.target = Some(raw.path_str());
                match self.plan.exec.rules.get(raw.rule as usize) {
                    Some(r) => apply_rule(&mut ev, &r.rule),
                    None if raw.arg & EXEC_SETID != 0 => {
                        ev.rule_id = Some("privileges.blockSetuid".into())
                    }
                    None if raw.arg & EXEC_ANONYMOUS != 0 => {
                        ev.rule_id = Some("process.anonymousExec".into())
                    }
                    None => ev.rule_id = Some("process.default".into()),
                }
                if raw.arg & EXEC_TOO_DEEP != 0 {
                    ev.message = Some(
                        "path too deep for the ancestor walk: refused in allowlist mode".into(),
                    );
                }
            }
            EV_LSM_FILE => {
                ev.layer = Some("bpf-lsm".into());
                ev.operation = Some("file".into());
                ev.target = Some(raw.path_str());
                let names: Vec<&str> =
                    [(ACC_READ, "read"), (ACC_WRITE, "write"), (ACC_EXEC, "exec")]
                        .iter()
                        .filter(|(bit, _)| raw.arg & (1 << bit) != 0)
                        .map(|(_, name)| *name)
                        .collect();
                ev.access = Some(names.join(","));
                if raw.arg & FILE_TOO_DEEP != 0 {
                    ev.rule_id = Some("file.rules".into());
                    ev.message = Some(
                        "path too deep for the ancestor walk: directory rules above it were not checked"
                            .into(),
                    );
                } else if let Some(r) = self.plan.file.get(raw.rule as usize) {
                    apply_rule(&mut ev, &r.rule);
                }
            }
            EV_LSM_SETID => {
                ev.layer = Some("bpf-lsm".into());
                ev.operation = Some("setuid".into());
                let id = raw.arg & 0xffff_ffff;
                let (access, what) = if raw.arg & SETID_GID != 0 {
                    ("setgid", "gid")
                } else {
                    ("setuid", "uid")
                };
                ev.access = Some(access.into());
                ev.target = Some(format!("{what} {id}"));
                ev.rule_id = Some("privileges.blockSetuid".into());
            }
            EV_SETID_EXEC => {
                ev.layer = Some("exec-guard".into());
                ev.operation = Some("setuid".into());
                ev.access = Some("exec".into());
                ev.target = Some(raw.path_str());
                ev.rule_id = Some("privileges.blockSetuid".into());
            }
            EV_SYSCALL => return self.attribute_syscall(raw, ev),
            _ => return None,
        }
        Some(ev)
    }

    fn attribute_syscall(&self, raw: &RawEvent, mut ev: Event) -> Option<Event> {
        const EACCES: i32 = -13;
        const EPERM: i32 = -1;
        if raw.ret == EPERM && raw.syscall == libc::SYS_socket as u32 {
            // The kernel checks CAP_NET_RAW before any BPF hook runs.
            const SOCK_TYPE_MASK: u64 = 0xf;
            if raw.arg & SOCK_TYPE_MASK != libc::SOCK_RAW as u64 || holds_net_raw(raw.pid) {
                // With CAP_NET_RAW the refusal came from the socket program, which reported it.
                return None;
            }
            ev.layer = Some("caps".into());
            ev.operation = Some("capability".into());
            ev.access = Some("socket".into());
            ev.target = Some("raw socket (CAP_NET_RAW)".into());
            ev.rule_id = Some("privileges.capabilities".into());
            return Some(ev);
        }
        if raw.ret == EPERM {
            let (_, name) = self
                .denied_syscalls
                .iter()
                .find(|(nr, _)| *nr == raw.syscall)?;
            ev.layer = Some("seccomp".into());
            ev.access = Some(name.clone());
            ev.target = Some(name.clone());
            if SETID_SYSCALLS.contains(&name.as_str()) && self.plan.privileges.block_setuid {
                ev.operation = Some("setuid".into());
                ev.rule_id = Some("privileges.blockSetuid".into());
            } else {
                ev.operation = Some("syscall".into());
                let rule = self.plan.seccomp.deny.iter().find(|r| &r.name == name)?;
                apply_rule(&mut ev, &rule.rule);
            }
            return Some(ev);
        }
        if raw.ret != EACCES {
            return None;
        }
        let raw_path = raw.path_str();
        if raw_path.is_empty() {
            return None;
        }
        let path = if raw_path.starts_with('/') {
            PathBuf::from(&raw_path)
        } else {
            std::fs::read_link(format!("/proc/{}/cwd", raw.pid))
                .map(|cwd| cwd.join(&raw_path))
                .unwrap_or_else(|_| PathBuf::from(&raw_path))
        };
        let resolved = std::fs::canonicalize(&path).unwrap_or(path.clone());
        let candidates = [path.display().to_string(), resolved.display().to_string()];
        ev.layer = Some("landlock".into());
        ev.target = Some(raw_path);
        if self.execve_nrs.contains(&raw.syscall) {
            ev.operation = Some("exec".into());
            ev.access = Some("exec".into());
            let decided = candidates.iter().find_map(|p| self.plan.decide_exec(p));
            match decided {
                Some(r) if r.verdict == RuleVerdict::Deny => apply_rule(&mut ev, &r.rule),
                Some(_) => return None,
                None if self.plan.exec.default == DefaultAction::Deny => {
                    ev.rule_id = Some("process.default".into())
                }
                None => return None,
            }
            return Some(ev);
        }
        ev.operation = Some("file".into());
        for access in [Access::Read, Access::Write] {
            let decided = candidates
                .iter()
                .find_map(|p| self.plan.decide_file(p, access))
                .filter(|r| r.verdict == RuleVerdict::Deny);
            if let Some(r) = decided {
                ev.access = Some(
                    r.access
                        .iter()
                        .map(|a| format!("{a:?}").to_lowercase())
                        .collect::<Vec<_>>()
                        .join(","),
                );
                apply_rule(&mut ev, &r.rule);
                return Some(ev);
            }
        }
        None
    }
}
