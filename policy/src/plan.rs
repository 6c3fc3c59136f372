//! The enforcement plan: a plain, serialisable description of what every layer
//! must do. `enforce/` applies it; nothing in it depends on the running host.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::caps_names;
use crate::model::*;
use crate::seccomp_profile::{self, add_alternative, FilterSpec, SeccompProfile, Verdict};

/// The kernel mechanisms that can carry a rule (INTERFACE.md, event field `layer`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    BpfLsm,
    Landlock,
    CgroupSock,
    Seccomp,
    ExecGuard,
    Caps,
}

impl Layer {
    pub fn name(self) -> &'static str {
        match self {
            Layer::BpfLsm => "bpf-lsm",
            Layer::Landlock => "landlock",
            Layer::CgroupSock => "cgroup-sock",
            Layer::Seccomp => "seccomp",
            Layer::ExecGuard => "exec-guard",
            Layer::Caps => "caps",
        }
    }

    /// Whether the layer can log-and-allow (audit) instead of blocking.
    pub fn can_audit(self) -> bool {
        matches!(self, Layer::BpfLsm | Layer::CgroupSock | Layer::ExecGuard)
    }
}

/// The layers that carry a rule, from those that could (`candidates`) and
/// those the host offers. Where BPF LSM is available it carries the rule
/// alone: it refuses inside the system call, matches by file identity,
/// audits, and names the rule in its event; the fallbacks (Landlock, the
/// exec guard, seccomp's set*id deny) would only duplicate it, and Landlock,
/// running first among the LSMs, would take the denial and its evidence.
pub fn carriers(candidates: &[Layer], available: &BTreeSet<Layer>) -> Vec<Layer> {
    if candidates.contains(&Layer::BpfLsm) && available.contains(&Layer::BpfLsm) {
        return vec![Layer::BpfLsm];
    }
    candidates
        .iter()
        .copied()
        .filter(|l| available.contains(l))
        .collect()
}

/// What events repeat about the rule that fired.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RuleInfo {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub severity: u8,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

pub const DEFAULT_SEVERITY: u8 = 5;

impl RuleInfo {
    fn from_meta(meta: &RuleMeta, auto_id: String) -> Self {
        RuleInfo {
            id: meta.id.clone().unwrap_or(auto_id),
            message: meta.message.clone(),
            severity: meta.severity.unwrap_or(DEFAULT_SEVERITY),
            tags: meta.tags.clone(),
        }
    }
}

/// A verdict a rule gives when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleVerdict {
    Allow,
    Deny,
    Audit,
}

impl From<RuleAction> for RuleVerdict {
    fn from(a: RuleAction) -> Self {
        match a {
            RuleAction::Allow => RuleVerdict::Allow,
            RuleAction::Deny => RuleVerdict::Deny,
            RuleAction::Audit => RuleVerdict::Audit,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PathRule {
    pub target: Target,
    pub access: Vec<Access>,
    pub verdict: RuleVerdict,
    pub rule: RuleInfo,
    pub layers: Vec<Layer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecPlan {
    /// `deny`: only what an allow rule lists may run (allowlist mode).
    pub default: DefaultAction,
    pub rules: Vec<PathRule>,
    /// Exec (and executable mappings) of a file with no name: memfd, O_TMPFILE.
    pub anonymous: DefaultAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NetPlanRule {
    pub cidr: IpNet,
    pub ports: Vec<(u16, u16)>,
    pub protocol: Protocol,
    pub verdict: RuleVerdict,
    pub rule: RuleInfo,
}

/// The egress decision table the cgroup socket programs load: an LPM trie over
/// IPv6 (IPv4 as v4-mapped), each prefix naming a group, and per group a
/// (protocol, port) table. Groups inherit what enclosing prefixes allow or deny,
/// so a single longest-prefix lookup decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EgressTable {
    pub default: DefaultAction,
    pub prefixes: Vec<PrefixEntry>,
    pub ports: Vec<PortEntry>,
    pub rules: Vec<NetPlanRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefixEntry {
    /// IPv6 bytes; IPv4 networks are stored v4-mapped with `prefix_len + 96`.
    pub addr: [u8; 16],
    pub prefix_len: u8,
    pub group: u32,
}

/// Protocol 0 means any; port 0 means any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortEntry {
    pub group: u32,
    pub protocol: u8,
    pub port: u16,
    pub verdict: RuleVerdict,
    /// Index into `EgressTable::rules`.
    pub rule: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivilegePlan {
    pub no_new_privileges: bool,
    pub block_setuid: bool,
    /// `ALL` or `CAP_*` names.
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub layers_setuid: Vec<Layer>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeccompPlan {
    pub profile_name: Option<String>,
    pub profile: Option<SeccompProfile>,
    pub deny: Vec<SyscallPlanRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SyscallPlanRule {
    pub name: String,
    pub rule: RuleInfo,
}

/// The set*id family a `blockSetuid` policy denies when no BPF LSM can check the target id.
pub const SETID_SYSCALLS: &[&str] = &[
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
    "setuid32",
    "setgid32",
    "setreuid32",
    "setregid32",
    "setresuid32",
    "setresgid32",
    "setfsuid32",
    "setfsgid32",
    "setgroups32",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub name: String,
    /// sha256 of the canonical plan (this field blank); stable across reformatting and reordering.
    pub digest: String,
    pub mode: Mode,
    pub enforcement: Enforcement,
    pub exec: ExecPlan,
    pub file: Vec<PathRule>,
    pub egress: Option<EgressTable>,
    pub raw_sockets: DefaultAction,
    pub privileges: PrivilegePlan,
    pub seccomp: SeccompPlan,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("policy `{policy}`: rule id `{id}` is used by more than one rule")]
    DuplicateId { policy: String, id: String },
    #[error("policy `{policy}`: {count} rules; the limit is {limit}")]
    TooManyRules {
        policy: String,
        count: usize,
        limit: usize,
    },
    #[error("policy `{policy}`: seccomp profile `{profile}` was not resolved before compiling")]
    UnresolvedProfile { policy: String, profile: String },
}

/// Layers that can carry a file rule (by access) or an exec rule.
fn file_layers(access: &[Access], verdict: RuleVerdict) -> Vec<Layer> {
    let mut layers = vec![Layer::BpfLsm];
    if verdict != RuleVerdict::Audit {
        layers.push(Layer::Landlock);
    }
    if access.contains(&Access::Exec) && verdict != RuleVerdict::Allow {
        layers.push(Layer::ExecGuard);
    }
    layers
}

fn exec_layers(verdict: RuleVerdict) -> Vec<Layer> {
    match verdict {
        RuleVerdict::Audit => vec![Layer::BpfLsm, Layer::ExecGuard],
        _ => vec![Layer::BpfLsm, Layer::Landlock, Layer::ExecGuard],
    }
}

fn target_key(t: &Target) -> String {
    match t {
        Target::Path { path } => path.clone(),
        Target::Dir {
            dir,
            recursive: true,
        } => format!("{dir}**"),
        Target::Dir { dir, .. } => format!("{dir}*"),
    }
}

fn access_key(access: &[Access]) -> String {
    access
        .iter()
        .map(|a| match a {
            Access::Read => "r",
            Access::Write => "w",
            Access::Exec => "x",
        })
        .collect()
}

/// Compiles a validated policy. `profiles` holds every seccomp profile the policy names by path.
pub fn compile(
    policy: &Policy,
    profiles: &BTreeMap<String, SeccompProfile>,
) -> Result<Plan, PlanError> {
    let spec = &policy.spec;
    let name = policy.metadata.name.clone();
    let audit_all = spec.mode == Mode::Audit;
    // In audit mode every deny becomes a logged allow.
    let soften = |v: RuleVerdict| {
        if audit_all && v == RuleVerdict::Deny {
            RuleVerdict::Audit
        } else {
            v
        }
    };

    let mut exec_rules = BTreeSet::new();
    let no_process = Default::default();
    let process = spec.process.as_ref().unwrap_or(&no_process);
    for (rules, base) in [
        (&process.allow, RuleVerdict::Allow),
        (&process.deny, RuleVerdict::Deny),
    ] {
        for r in rules {
            let verdict = soften(if r.audit { RuleVerdict::Audit } else { base });
            let auto = format!(
                "process:{}:{}",
                format!("{verdict:?}").to_lowercase(),
                target_key(&r.target)
            );
            exec_rules.insert(PathRule {
                target: r.target.clone(),
                access: vec![Access::Exec],
                verdict,
                rule: RuleInfo::from_meta(&r.meta, auto),
                layers: exec_layers(verdict),
            });
        }
    }

    let mut file_rules = BTreeSet::new();
    for r in spec.file.iter().flat_map(|f| &f.rules) {
        let verdict = soften(r.action.into());
        let auto = format!(
            "file:{}:{}:{}",
            format!("{verdict:?}").to_lowercase(),
            access_key(&r.access),
            target_key(&r.target)
        );
        file_rules.insert(PathRule {
            target: r.target.clone(),
            access: r.access.clone(),
            verdict,
            rule: RuleInfo::from_meta(&r.meta, auto),
            layers: file_layers(&r.access, verdict),
        });
    }

    let network = spec.network.as_ref();
    let egress = network
        .as_ref()
        .and_then(|n| n.egress.as_ref())
        .map(|e| build_egress(e, &soften));
    let raw_sockets = match &network {
        Some(n) => n.raw_sockets,
        None => DefaultAction::Allow,
    };

    let privileges = spec.privileges.clone().unwrap_or_default();
    let caps = privileges.capabilities.clone().unwrap_or_default();
    let privilege_plan = PrivilegePlan {
        no_new_privileges: privileges.no_new_privileges.unwrap_or(false),
        block_setuid: privileges.block_setuid,
        cap_drop: sorted(caps.drop),
        cap_add: sorted(caps.add),
        layers_setuid: if privileges.block_setuid {
            vec![Layer::BpfLsm, Layer::Seccomp, Layer::ExecGuard]
        } else {
            Vec::new()
        },
    };

    let no_syscalls = Default::default();
    let syscalls = spec.syscalls.as_ref().unwrap_or(&no_syscalls);
    let (profile_name, profile) = match &syscalls.profile {
        None => (None, None),
        Some(ProfileRef::Inline(p)) => (Some("inline".to_string()), Some(p.clone())),
        Some(ProfileRef::Named(n)) if n == RUNTIME_DEFAULT => (
            Some(n.clone()),
            Some(seccomp_profile::runtime_default().clone()),
        ),
        Some(ProfileRef::Named(n)) => {
            let p = profiles
                .get(n)
                .ok_or_else(|| PlanError::UnresolvedProfile {
                    policy: name.clone(),
                    profile: n.clone(),
                })?;
            (Some(n.clone()), Some(p.clone()))
        }
    };
    let deny: BTreeSet<SyscallPlanRule> = syscalls
        .deny
        .iter()
        .map(|r| SyscallPlanRule {
            name: r.name.clone(),
            rule: RuleInfo::from_meta(&r.meta, format!("syscall:deny:{}", r.name)),
        })
        .collect();

    let mut plan = Plan {
        name: name.clone(),
        digest: String::new(),
        mode: spec.mode,
        enforcement: spec.enforcement,
        exec: ExecPlan {
            default: process.default,
            rules: exec_rules.into_iter().collect(),
            anonymous: match &spec.process {
                Some(p) => p.anonymous_exec.unwrap_or(DefaultAction::Deny),
                None => DefaultAction::Allow,
            },
        },
        file: file_rules.into_iter().collect(),
        egress,
        raw_sockets,
        privileges: privilege_plan,
        seccomp: SeccompPlan {
            profile_name,
            profile,
            deny: deny.into_iter().collect(),
        },
    };

    let count = plan.rule_count();
    if count > MAX_RULES {
        return Err(PlanError::TooManyRules {
            policy: name,
            count,
            limit: MAX_RULES,
        });
    }
    let mut seen = BTreeSet::new();
    for id in plan.rule_ids() {
        if !seen.insert(id) {
            return Err(PlanError::DuplicateId {
                policy: name,
                id: id.to_string(),
            });
        }
    }
    plan.digest = plan.compute_digest();
    Ok(plan)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Any => 0,
    }
}

fn mapped(net: &IpNet) -> ([u8; 16], u8) {
    match net {
        IpNet::V4(n) => (n.addr().to_ipv6_mapped().octets(), n.prefix_len() + 96),
        IpNet::V6(n) => (n.addr().octets(), n.prefix_len()),
    }
}

/// The address with only its first `len` bits kept.
fn truncate(addr: &[u8; 16], len: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    let full = (len / 8) as usize;
    out[..full].copy_from_slice(&addr[..full]);
    let rem = len % 8;
    if rem != 0 && full < 16 {
        out[full] = addr[full] & (0xffu8 << (8 - rem));
    }
    out
}

/// (protocol, port) -> (verdict, rule index) for one prefix group.
type PortTable = BTreeMap<(u8, u16), (RuleVerdict, u32)>;

fn build_egress(e: &Egress, soften: &dyn Fn(RuleVerdict) -> RuleVerdict) -> EgressTable {
    let mut rules = BTreeSet::new();
    for (list, base) in [(&e.allow, RuleVerdict::Allow), (&e.deny, RuleVerdict::Deny)] {
        for r in list {
            let verdict = soften(if r.audit { RuleVerdict::Audit } else { base });
            let ports: Vec<String> = r
                .ports
                .iter()
                .map(|p| {
                    if p.first == p.last {
                        p.first.to_string()
                    } else {
                        format!("{}-{}", p.first, p.last)
                    }
                })
                .collect();
            let auto = format!(
                "egress:{}:{}:{}/{}",
                format!("{verdict:?}").to_lowercase(),
                r.cidr,
                if ports.is_empty() {
                    "*".into()
                } else {
                    ports.join(",")
                },
                format!("{:?}", r.protocol).to_lowercase()
            );
            rules.insert(NetPlanRule {
                cidr: r.cidr,
                ports: r.ports.iter().map(|p| (p.first, p.last)).collect(),
                protocol: r.protocol,
                verdict,
                rule: RuleInfo::from_meta(&r.meta, auto),
            });
        }
    }
    let rules: Vec<NetPlanRule> = rules.into_iter().collect();

    // One group per distinct prefix; a group's table is its own entries over
    // those inherited from every enclosing prefix (most specific first).
    // Enclosing prefixes are found by truncating to each shorter length and
    // looking the result up, so the build stays linear in the rule count.
    let mut by_prefix: BTreeMap<([u8; 16], u8), Vec<usize>> = BTreeMap::new();
    for (ri, r) in rules.iter().enumerate() {
        by_prefix.entry(mapped(&r.cidr)).or_default().push(ri);
    }
    let prefixes: Vec<([u8; 16], u8)> = by_prefix.keys().copied().collect();
    let own_tables: BTreeMap<([u8; 16], u8), PortTable> = by_prefix
        .iter()
        .map(|(prefix, indices)| {
            let mut own = PortTable::new();
            for &ri in indices {
                let r = &rules[ri];
                let proto = proto_number(r.protocol);
                let ports: Vec<u16> = if r.ports.is_empty() {
                    vec![0]
                } else {
                    r.ports.iter().flat_map(|(a, b)| *a..=*b).collect()
                };
                for port in ports {
                    // On a tie at the same prefix, deny beats audit beats allow.
                    let keep = own
                        .get(&(proto, port))
                        .is_none_or(|(v, _)| rank(r.verdict) > rank(*v));
                    if keep {
                        own.insert((proto, port), (r.verdict, ri as u32));
                    }
                }
            }
            (*prefix, own)
        })
        .collect();
    // Only lengths some rule uses can hold an enclosing prefix.
    let lengths: std::collections::BTreeSet<u8> = prefixes.iter().map(|p| p.1).collect();
    let mut entries_of: BTreeMap<usize, PortTable> = BTreeMap::new();
    for (gi, prefix) in prefixes.iter().enumerate() {
        let mut table = PortTable::new();
        // Least specific first, so more specific prefixes overwrite.
        for &len in lengths.range(..=prefix.1) {
            let enclosing = (truncate(&prefix.0, len), len);
            if let Some(own) = own_tables.get(&enclosing) {
                table.extend(own.iter().map(|(k, v)| (*k, *v)));
            }
        }
        entries_of.insert(gi, table);
    }
    let mut ports = Vec::new();
    for (gi, table) in entries_of {
        for ((protocol, port), (verdict, rule)) in table {
            ports.push(PortEntry {
                group: gi as u32,
                protocol,
                port,
                verdict,
                rule,
            });
        }
    }
    EgressTable {
        default: e.default,
        prefixes: prefixes
            .into_iter()
            .enumerate()
            .map(|(gi, (addr, prefix_len))| PrefixEntry {
                addr,
                prefix_len,
                group: gi as u32,
            })
            .collect(),
        ports,
        rules,
    }
}

fn rank(v: RuleVerdict) -> u8 {
    match v {
        RuleVerdict::Allow => 0,
        RuleVerdict::Audit => 1,
        RuleVerdict::Deny => 2,
    }
}

impl Plan {
    pub fn rule_count(&self) -> usize {
        self.exec.rules.len()
            + self.file.len()
            + self.egress.as_ref().map_or(0, |e| e.rules.len())
            + self.seccomp.deny.len()
    }

    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.exec
            .rules
            .iter()
            .chain(&self.file)
            .map(|r| r.rule.id.as_str())
            .chain(
                self.egress
                    .iter()
                    .flat_map(|e| &e.rules)
                    .map(|r| r.rule.id.as_str()),
            )
            .chain(self.seccomp.deny.iter().map(|r| r.rule.id.as_str()))
    }

    /// sha256 of the plan's JSON with `digest` empty, hashed as it is written.
    fn compute_digest(&self) -> String {
        struct HashWriter(Sha256);
        impl std::io::Write for HashWriter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        debug_assert!(self.digest.is_empty());
        let mut w = HashWriter(Sha256::new());
        // Serialising plain data to an in-memory hasher cannot fail.
        let _ = serde_json::to_writer(&mut w, self);
        format!("sha256:{}", hex::encode(w.0.finalize()))
    }

    /// The capabilities a workload keeps, starting from `base`.
    pub fn effective_caps(&self, base: &BTreeSet<String>) -> BTreeSet<String> {
        let mut caps = if self
            .privileges
            .cap_drop
            .iter()
            .any(|c| c == caps_names::ALL)
        {
            BTreeSet::new()
        } else {
            base.iter()
                .filter(|c| !self.privileges.cap_drop.contains(c))
                .cloned()
                .collect()
        };
        caps.extend(self.privileges.cap_add.iter().cloned());
        caps
    }

    /// The stacked seccomp filters for a workload keeping `caps`.
    ///
    /// `with_setid_deny`: the host has no BPF LSM to check the target uid, so a
    /// `blockSetuid` policy denies the set*id family here.
    pub fn seccomp_filters(
        &self,
        caps: &BTreeSet<String>,
        with_setid_deny: bool,
    ) -> Vec<FilterSpec> {
        let mut specs = self
            .seccomp
            .profile
            .as_ref()
            .map(|p| p.filter_specs(caps))
            .unwrap_or_default();
        let mut deny = FilterSpec {
            name: "deny".into(),
            mismatch: Verdict::Allow,
            matched: Verdict::Errno(1),
            rules: BTreeMap::new(),
        };
        for r in &self.seccomp.deny {
            add_alternative(&mut deny.rules, &r.name, &[]);
        }
        if with_setid_deny && self.privileges.block_setuid {
            for name in SETID_SYSCALLS {
                add_alternative(&mut deny.rules, name, &[]);
            }
        }
        if !deny.rules.is_empty() && self.mode == Mode::Enforce {
            specs.push(deny);
        }
        specs
    }

    /// The rule that decides `access` to `path` by the "most specific wins, deny
    /// on a tie" semantics; `None` when no rule matches.
    pub fn decide_file(&self, path: &str, access: Access) -> Option<&PathRule> {
        decide(
            self.file.iter().filter(|r| r.access.contains(&access)),
            path,
        )
    }

    pub fn decide_exec(&self, path: &str) -> Option<&PathRule> {
        decide(self.exec.rules.iter(), path)
    }
}

/// How specifically `target` matches `path`: exact path beats a deeper
/// directory beats a shallower one. `None` when it does not match.
pub fn specificity(target: &Target, path: &str) -> Option<usize> {
    match target {
        Target::Path { path: p } => (p == path).then_some(usize::MAX),
        Target::Dir { dir, recursive } => {
            let rest = path.strip_prefix(dir.as_str())?;
            if rest.is_empty() {
                return None;
            }
            if !recursive && rest.contains('/') {
                return None;
            }
            Some(dir.len())
        }
    }
}

fn decide<'a>(rules: impl Iterator<Item = &'a PathRule>, path: &str) -> Option<&'a PathRule> {
    rules
        .filter_map(|r| specificity(&r.target, path).map(|s| (s, rank(r.verdict), r)))
        .max_by_key(|(s, rank, _)| (*s, *rank))
        .map(|(_, _, r)| r)
}
