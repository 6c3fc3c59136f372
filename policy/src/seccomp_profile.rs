//! OCI seccomp profiles (runtime-spec `linux.seccomp`, also Docker's JSON with
//! `includes`/`excludes` by capability) and their compilation to BPF.
//!
//! Names are resolved per architecture by seccompiler's own tables: a name
//! unknown on one architecture is left out of that architecture's filter, as
//! libseccomp does; a name unknown on every supported architecture is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use seccompiler::{BpfProgram, TargetArch};
use serde::Serialize;

use crate::decode::{self, index, Fields};
use crate::diag::Diagnostics;
use crate::yaml::Node;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    pub default_action: SeccompAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    pub syscalls: Vec<SyscallGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallGroup {
    pub names: Vec<String>,
    pub action: SeccompAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<ArgCheck>,
    /// The group applies only if the workload keeps all these capabilities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub includes_caps: Vec<String>,
    /// The group applies only if the workload keeps none of these capabilities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excludes_caps: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub enum SeccompAction {
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    #[serde(rename = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
}

const ACTIONS: &[(&str, SeccompAction)] = &[
    ("SCMP_ACT_ALLOW", SeccompAction::Allow),
    ("SCMP_ACT_ERRNO", SeccompAction::Errno),
    ("SCMP_ACT_KILL", SeccompAction::KillThread),
    ("SCMP_ACT_KILL_THREAD", SeccompAction::KillThread),
    ("SCMP_ACT_KILL_PROCESS", SeccompAction::KillProcess),
    ("SCMP_ACT_TRAP", SeccompAction::Trap),
    ("SCMP_ACT_TRACE", SeccompAction::Trace),
    ("SCMP_ACT_LOG", SeccompAction::Log),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ArgCheck {
    pub index: u8,
    pub value: u64,
    #[serde(rename = "valueTwo", skip_serializing_if = "is_zero")]
    pub value_two: u64,
    pub op: CmpOp,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CmpOp {
    #[serde(rename = "SCMP_CMP_NE")]
    Ne,
    #[serde(rename = "SCMP_CMP_LT")]
    Lt,
    #[serde(rename = "SCMP_CMP_LE")]
    Le,
    #[serde(rename = "SCMP_CMP_EQ")]
    Eq,
    #[serde(rename = "SCMP_CMP_GE")]
    Ge,
    #[serde(rename = "SCMP_CMP_GT")]
    Gt,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEq,
}

const OPS: &[(&str, CmpOp)] = &[
    ("SCMP_CMP_NE", CmpOp::Ne),
    ("SCMP_CMP_LT", CmpOp::Lt),
    ("SCMP_CMP_LE", CmpOp::Le),
    ("SCMP_CMP_EQ", CmpOp::Eq),
    ("SCMP_CMP_GE", CmpOp::Ge),
    ("SCMP_CMP_GT", CmpOp::Gt),
    ("SCMP_CMP_MASKED_EQ", CmpOp::MaskedEq),
];

/// The architectures Palisade compiles filters for.
pub const TARGET_ARCHES: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    Aarch64,
}

impl Arch {
    fn target(self) -> TargetArch {
        match self {
            Arch::X86_64 => TargetArch::x86_64,
            Arch::Aarch64 => TargetArch::aarch64,
        }
    }

    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }
}

const PROFILE_FIELDS: &[&str] = &[
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "syscalls",
    "comment",
    "flags",
    "listenerPath",
    "listenerMetadata",
    "archMap",
];
const GROUP_FIELDS: &[&str] = &[
    "names", "name", "action", "errnoRet", "args", "includes", "excludes", "comment",
];
const ARG_FIELDS: &[&str] = &["index", "value", "valueTwo", "op"];

/// Decodes a profile. Fields that cannot be honoured (a seccomp agent, flags) are errors.
pub fn decode_profile(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<SeccompProfile> {
    let mut f = Fields::open(node, path, PROFILE_FIELDS, diags)?;
    let before = diags.items.len();
    f.get("comment");
    for unsupported in ["listenerPath", "listenerMetadata", "flags"] {
        if f.get(unsupported).is_some() {
            diags.error_hint(
                f.key_pos(unsupported).unwrap_or(f.pos),
                &f.field_path(unsupported),
                format!("`{unsupported}` cannot be honoured by Palisade"),
                "seccomp notify agents and filter flags are not supported; remove the field",
            );
        }
    }
    if let Some(n) = f.get("archMap") {
        diags.error_hint(
            n.pos,
            &f.field_path("archMap"),
            "`archMap` is not supported",
            "list the architectures in `architectures`; filters are compiled for x86_64 and aarch64",
        );
    }
    let default_action = f
        .require("defaultAction", diags)
        .and_then(|n| decode::keyword(n, &f.field_path("defaultAction"), ACTIONS, diags));
    let default_errno_ret = f
        .get("defaultErrnoRet")
        .and_then(|n| errno(n, &f.field_path("defaultErrnoRet"), diags));
    let mut architectures = Vec::new();
    if let Some(n) = f.get("architectures") {
        for (i, item) in decode::list(n, &f.field_path("architectures"), diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let p = index(&f.field_path("architectures"), i);
            if let Some(a) = decode::string(item, &p, diags) {
                if !a.starts_with("SCMP_ARCH_") {
                    diags.error_hint(
                        item.pos,
                        &p,
                        format!("unknown architecture `{a}`"),
                        "use libseccomp names such as SCMP_ARCH_X86_64 or SCMP_ARCH_AARCH64",
                    );
                }
                architectures.push(a);
            }
        }
    }
    let mut syscalls = Vec::new();
    if let Some(n) = f.get("syscalls") {
        let p = f.field_path("syscalls");
        for (i, item) in decode::list(n, &p, diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(g) = decode_group(item, &index(&p, i), diags) {
                syscalls.push(g);
            }
        }
    }
    f.finish(diags);
    if diags.items.len() > before && diags.has_errors() {
        return None;
    }
    Some(SeccompProfile {
        default_action: default_action?,
        default_errno_ret,
        architectures,
        syscalls,
    })
}

fn errno(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<u32> {
    let v = decode::integer(node, path, diags)?;
    if !(0..=4095).contains(&v) {
        diags.error(node.pos, path, format!("errno {v} is out of range 0-4095"));
        return None;
    }
    Some(v as u32)
}

fn decode_group(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<SyscallGroup> {
    let mut f = Fields::open(node, path, GROUP_FIELDS, diags)?;
    f.get("comment");
    let mut names = Vec::new();
    for key in ["names", "name"] {
        let Some(n) = f.get(key) else { continue };
        let p = f.field_path(key);
        if key == "name" {
            names.extend(decode::string(n, &p, diags));
            continue;
        }
        for (i, item) in decode::list(n, &p, diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let ip = index(&p, i);
            if let Some(name) = decode::string(item, &ip, diags) {
                check_syscall_name(&name, item, &ip, true, diags);
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        diags.error(f.pos, path, "a syscall entry needs `names`");
    }
    if let Some(action_node) = f.get("action") {
        if action_node.as_str() == Some("SCMP_ACT_NOTIFY") {
            diags.error_hint(
                action_node.pos,
                &f.field_path("action"),
                "SCMP_ACT_NOTIFY cannot be honoured",
                "Palisade runs no seccomp agent; use SCMP_ACT_ERRNO or SCMP_ACT_KILL_PROCESS",
            );
        }
    }
    let action = f
        .require("action", diags)
        .and_then(|n| decode::keyword(n, &f.field_path("action"), ACTIONS, diags));
    let errno_ret = f
        .get("errnoRet")
        .and_then(|n| errno(n, &f.field_path("errnoRet"), diags));
    let mut args = Vec::new();
    if let Some(n) = f.get("args") {
        let p = f.field_path("args");
        for (i, item) in decode::list(n, &p, diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            args.extend(decode_arg(item, &index(&p, i), diags));
        }
    }
    let includes_caps = caps_condition(&mut f, "includes", diags);
    let excludes_caps = caps_condition(&mut f, "excludes", diags);
    f.finish(diags);
    Some(SyscallGroup {
        names,
        action: action?,
        errno_ret,
        args,
        includes_caps,
        excludes_caps,
    })
}

fn caps_condition(f: &mut Fields<'_>, key: &str, diags: &mut Diagnostics) -> Vec<String> {
    let Some(n) = f.get(key) else {
        return Vec::new();
    };
    let p = f.field_path(key);
    let Some(mut c) = Fields::open(n, &p, &["caps", "arches", "minKernel"], diags) else {
        return Vec::new();
    };
    let mut caps = Vec::new();
    if let Some(list) = c.get("caps") {
        let lp = c.field_path("caps");
        for (i, item) in decode::list(list, &lp, diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let ip = index(&lp, i);
            if let Some(name) = decode::string(item, &ip, diags) {
                if let Some(cap) = crate::caps_names::normalise(&name) {
                    caps.push(cap);
                } else {
                    diags.error(item.pos, &ip, format!("unknown capability `{name}`"));
                }
            }
        }
    }
    for unsupported in ["arches", "minKernel"] {
        if let Some(n) = c.get(unsupported) {
            diags.error_hint(
                n.pos,
                &c.field_path(unsupported),
                format!("`{key}.{unsupported}` is not supported"),
                "only capability conditions are honoured",
            );
        }
    }
    c.finish(diags);
    caps
}

fn decode_arg(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<ArgCheck> {
    let mut f = Fields::open(node, path, ARG_FIELDS, diags)?;
    let idx = f
        .require("index", diags)
        .and_then(|n| decode::integer(n, &f.field_path("index"), diags));
    let value = f
        .require("value", diags)
        .and_then(|n| u64_value(n, &f.field_path("value"), diags));
    let value_two = match f.get("valueTwo") {
        Some(n) => u64_value(n, &f.field_path("valueTwo"), diags),
        None => Some(0),
    };
    let op = f
        .require("op", diags)
        .and_then(|n| decode::keyword(n, &f.field_path("op"), OPS, diags));
    let pos = f.pos;
    f.finish(diags);
    let idx = idx?;
    if !(0..=5).contains(&idx) {
        diags.error(pos, &format!("{path}.index"), "argument index must be 0-5");
        return None;
    }
    Some(ArgCheck {
        index: idx as u8,
        value: value?,
        value_two: value_two?,
        op: op?,
    })
}

fn u64_value(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<u64> {
    let text = decode::string(node, path, diags)?;
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse::<u64>().ok(),
    };
    if parsed.is_none() {
        diags.error(
            node.pos,
            path,
            format!("expected an unsigned 64-bit number, found `{text}`"),
        );
    }
    parsed
}

/// Whether `name` is a system call on `arch`, according to seccompiler's table.
pub fn syscall_exists(name: &str, arch: Arch) -> bool {
    static CACHE: OnceLock<Mutex<BTreeMap<(Arch, String), bool>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (arch, name.to_string());
    if let Some(known) = cache.lock().ok().and_then(|c| c.get(&key).copied()) {
        return known;
    }
    let probe = serde_json::json!({
        "probe": {
            "mismatch_action": "allow",
            "match_action": {"errno": 1},
            "filter": [{"syscall": name}],
        }
    });
    let known = seccompiler::compile_from_json(probe.to_string().as_bytes(), arch.target()).is_ok();
    if let Ok(mut c) = cache.lock() {
        c.insert(key, known);
    }
    known
}

/// Records an error (or, for imported profiles, a warning) for a name no supported arch knows.
pub fn check_syscall_name(
    name: &str,
    node: &Node,
    path: &str,
    imported: bool,
    diags: &mut Diagnostics,
) {
    if TARGET_ARCHES.iter().any(|a| syscall_exists(name, *a)) {
        return;
    }
    let message = format!("`{name}` is not a system call on x86_64 or aarch64");
    if imported {
        // Stock profiles list 32-bit-only names (chown32, _llseek); libseccomp skips them too.
        diags.warning(node.pos, path, format!("{message}; it is ignored"));
    } else {
        diags.error_hint(
            node.pos,
            path,
            message,
            "use the kernel's name, e.g. `ptrace`, `mount`, `unshare`",
        );
    }
}

/// One stacked seccomp filter: the kernel applies the most restrictive result of all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterSpec {
    pub name: String,
    pub mismatch: Verdict,
    pub matched: Verdict,
    /// Syscall name -> alternatives (each a conjunction of checks); empty means "always".
    pub rules: BTreeMap<String, Vec<Vec<ArgCheckKey>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Errno(u32),
    KillThread,
    KillProcess,
    Trap,
    Trace(u32),
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ArgCheckKey {
    pub index: u8,
    pub op: &'static str,
    pub mask: u64,
    pub value: u64,
}

impl SeccompProfile {
    fn verdict(action: SeccompAction, errno: Option<u32>) -> Verdict {
        match action {
            SeccompAction::Allow => Verdict::Allow,
            SeccompAction::Errno => Verdict::Errno(errno.unwrap_or(libc_eperm())),
            SeccompAction::KillThread => Verdict::KillThread,
            SeccompAction::KillProcess => Verdict::KillProcess,
            SeccompAction::Trap => Verdict::Trap,
            SeccompAction::Trace => Verdict::Trace(errno.unwrap_or(0)),
            SeccompAction::Log => Verdict::Log,
        }
    }

    /// The groups that apply to a workload keeping `caps` (upper-case `CAP_*` names).
    pub fn groups_for<'a>(
        &'a self,
        caps: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = &'a SyscallGroup> + 'a {
        self.syscalls.iter().filter(move |g| {
            g.includes_caps.iter().all(|c| caps.contains(c))
                && !g.excludes_caps.iter().any(|c| caps.contains(c))
        })
    }

    /// Stacked filters with the profile's meaning: one filter lets every listed
    /// syscall through to the per-action filters, which apply the listed action.
    pub fn filter_specs(&self, caps: &BTreeSet<String>) -> Vec<FilterSpec> {
        let default = Self::verdict(self.default_action, self.default_errno_ret);
        let mut base = FilterSpec {
            name: "profile".into(),
            mismatch: default,
            matched: Verdict::Allow,
            rules: BTreeMap::new(),
        };
        let mut by_action: BTreeMap<Verdict, FilterSpec> = BTreeMap::new();
        for group in self.groups_for(caps) {
            let verdict = Self::verdict(group.action, group.errno_ret);
            let checks: Vec<ArgCheckKey> = group.args.iter().map(arg_key).collect();
            for name in &group.names {
                add_alternative(&mut base.rules, name, &checks);
                if verdict != Verdict::Allow {
                    let spec = by_action.entry(verdict).or_insert_with(|| FilterSpec {
                        name: format!("profile-{verdict:?}").to_lowercase(),
                        mismatch: Verdict::Allow,
                        matched: verdict,
                        rules: BTreeMap::new(),
                    });
                    add_alternative(&mut spec.rules, name, &checks);
                }
            }
        }
        let mut specs = Vec::new();
        if base.mismatch != Verdict::Allow {
            specs.push(base);
        }
        specs.extend(by_action.into_values());
        specs
    }
}

/// EPERM, what runtimes return when a profile gives no errno.
fn libc_eperm() -> u32 {
    1
}

fn arg_key(a: &ArgCheck) -> ArgCheckKey {
    let (op, mask, value) = match a.op {
        CmpOp::Ne => ("ne", 0, a.value),
        CmpOp::Lt => ("lt", 0, a.value),
        CmpOp::Le => ("le", 0, a.value),
        CmpOp::Eq => ("eq", 0, a.value),
        CmpOp::Ge => ("ge", 0, a.value),
        CmpOp::Gt => ("gt", 0, a.value),
        // OCI: `value` is the mask, `valueTwo` what the masked argument must equal.
        CmpOp::MaskedEq => ("masked_eq", a.value, a.value_two),
    };
    ArgCheckKey {
        index: a.index,
        op,
        mask,
        value,
    }
}

/// An unconditional entry swallows conditional ones: seccompiler would otherwise
/// keep only the conditions and lose the "always".
pub fn add_alternative(
    rules: &mut BTreeMap<String, Vec<Vec<ArgCheckKey>>>,
    name: &str,
    checks: &[ArgCheckKey],
) {
    let alternatives = rules.entry(name.to_string()).or_default();
    if alternatives.iter().any(|a| a.is_empty()) {
        return;
    }
    if checks.is_empty() {
        alternatives.clear();
        alternatives.push(Vec::new());
    } else if !alternatives.iter().any(|a| a.as_slice() == checks) {
        alternatives.push(checks.to_vec());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("seccomp filter `{filter}` for {arch:?} did not compile: {reason}")]
    Seccomp {
        filter: String,
        arch: Arch,
        reason: String,
    },
}

impl FilterSpec {
    /// BPF for `arch`, through seccompiler; names the arch does not have are left out.
    pub fn compile(&self, arch: Arch) -> Result<Option<BpfProgram>, CompileError> {
        if self.mismatch == self.matched {
            return Ok(None);
        }
        let mut filter = Vec::new();
        for (name, alternatives) in &self.rules {
            if !syscall_exists(name, arch) {
                continue;
            }
            if alternatives.iter().any(|a| a.is_empty()) {
                filter.push(serde_json::json!({"syscall": name}));
                continue;
            }
            for checks in alternatives {
                let args: Vec<_> = checks
                    .iter()
                    .map(|c| {
                        let op = if c.op == "masked_eq" {
                            serde_json::json!({"masked_eq": c.mask})
                        } else {
                            serde_json::json!(c.op)
                        };
                        serde_json::json!({"index": c.index, "type": "qword", "op": op, "val": c.value})
                    })
                    .collect();
                filter.push(serde_json::json!({"syscall": name, "args": args}));
            }
        }
        let json = serde_json::json!({
            "f": {
                "mismatch_action": verdict_json(self.mismatch),
                "match_action": verdict_json(self.matched),
                "filter": filter,
            }
        });
        let err = |reason: String| CompileError::Seccomp {
            filter: self.name.clone(),
            arch,
            reason,
        };
        let mut map = seccompiler::compile_from_json(json.to_string().as_bytes(), arch.target())
            .map_err(|e| err(e.to_string()))?;
        map.remove("f")
            .map(Some)
            .ok_or_else(|| err("no program produced".into()))
    }
}

fn verdict_json(v: Verdict) -> serde_json::Value {
    match v {
        Verdict::Allow => serde_json::json!("allow"),
        Verdict::Errno(e) => serde_json::json!({"errno": e}),
        Verdict::KillThread => serde_json::json!("kill_thread"),
        Verdict::KillProcess => serde_json::json!("kill_process"),
        Verdict::Trap => serde_json::json!("trap"),
        Verdict::Trace(n) => serde_json::json!({"trace": n}),
        Verdict::Log => serde_json::json!("log"),
    }
}

/// The built-in `runtime/default` profile.
pub fn runtime_default() -> &'static SeccompProfile {
    static PROFILE: OnceLock<SeccompProfile> = OnceLock::new();
    PROFILE.get_or_init(|| {
        let source = include_str!("../data/runtime-default.json");
        let docs = crate::yaml::parse_documents(source).unwrap_or_default();
        let mut diags = Diagnostics::default();
        docs.first()
            .and_then(|d| decode_profile(d, "runtime/default", &mut diags))
            .unwrap_or(SeccompProfile {
                // Unreachable with the shipped data (a test decodes it); fail closed anyway.
                default_action: SeccompAction::Errno,
                default_errno_ret: Some(1),
                architectures: Vec::new(),
                syscalls: Vec::new(),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profile_decodes_cleanly() {
        let source = include_str!("../data/runtime-default.json");
        let docs = crate::yaml::parse_documents(source).unwrap();
        let mut diags = Diagnostics::default();
        let p = decode_profile(&docs[0], "runtime/default", &mut diags).unwrap();
        assert!(!diags.has_errors(), "{:?}", diags.items);
        assert!(p.syscalls[0].names.len() > 300);
    }

    #[test]
    fn names_resolve_per_arch() {
        assert!(syscall_exists("open", Arch::X86_64));
        assert!(!syscall_exists("open", Arch::Aarch64));
        assert!(syscall_exists("openat", Arch::Aarch64));
        assert!(!syscall_exists("definitely_not_a_syscall", Arch::X86_64));
    }

    #[test]
    fn capability_conditions_select_groups() {
        let p = runtime_default();
        let none = BTreeSet::new();
        let admin: BTreeSet<String> = ["CAP_SYS_ADMIN".to_string()].into();
        let has = |caps: &BTreeSet<String>, name: &str| {
            p.groups_for(caps).any(|g| {
                g.names.iter().any(|n| n == name)
                    && g.args.is_empty()
                    && g.action == SeccompAction::Allow
            })
        };
        assert!(!has(&none, "mount"));
        assert!(has(&admin, "mount"));
    }

    #[test]
    fn runtime_default_compiles_for_both_arches() {
        for arch in TARGET_ARCHES {
            let specs = runtime_default().filter_specs(&BTreeSet::new());
            // The allowlist, and clone3 -> ENOSYS for workloads without CAP_SYS_ADMIN.
            assert_eq!(specs.len(), 2);
            assert!(specs[0]
                .compile(arch)
                .unwrap()
                .is_some_and(|p| p.len() > 300));
            assert!(specs[1].rules.contains_key("clone3"));
            assert!(specs[1].compile(arch).unwrap().is_some());
        }
    }
}
