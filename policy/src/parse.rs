//! Decoding a `palisade.dev/v1` Policy document from the positioned YAML tree.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::caps_names;
use crate::decode::{self, index, Fields};
use crate::diag::Diagnostics;
use crate::model::*;
use crate::seccomp_profile::{self, check_syscall_name};
use crate::yaml::Node;

const TOP: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const METADATA: &[&str] = &["name", "namespace", "labels", "annotations"];
const SPEC: &[&str] = &[
    "mode",
    "enforcement",
    "process",
    "file",
    "network",
    "privileges",
    "syscalls",
];
const PROCESS: &[&str] = &["default", "allow", "deny", "anonymousExec"];
const PROCESS_RULE: &[&str] = &[
    "path",
    "dir",
    "recursive",
    "action",
    "id",
    "message",
    "severity",
    "tags",
];
const FILE: &[&str] = &["rules"];
const FILE_RULE: &[&str] = &[
    "path",
    "dir",
    "recursive",
    "access",
    "action",
    "id",
    "message",
    "severity",
    "tags",
];
const NETWORK: &[&str] = &["egress", "rawSockets"];
const EGRESS: &[&str] = &["default", "allow", "deny"];
const NET_RULE: &[&str] = &[
    "cidr", "ports", "protocol", "action", "id", "message", "severity", "tags",
];
const PRIVILEGES: &[&str] = &["noNewPrivileges", "blockSetuid", "capabilities"];
const CAPABILITIES: &[&str] = &["drop", "add"];
const SYSCALLS: &[&str] = &["profile", "deny"];
const SYSCALL_RULE: &[&str] = &["name", "id", "message", "severity", "tags"];

const DEFAULTS: &[(&str, DefaultAction)] = &[
    ("allow", DefaultAction::Allow),
    ("deny", DefaultAction::Deny),
];

/// Decodes one Palisade Policy document. Returns `None` when it has errors.
pub fn decode_policy(doc: &Node, diags: &mut Diagnostics) -> Option<Policy> {
    let mut top = Fields::open(doc, "", TOP, diags)?;
    let api_version = top
        .require("apiVersion", diags)
        .and_then(|n| decode::string(n, "apiVersion", diags));
    if let Some(v) = &api_version {
        if v != API_VERSION {
            let pos = top.get("apiVersion").map(|n| n.pos).unwrap_or(top.pos);
            diags.error_hint(
                pos,
                "apiVersion",
                format!("unsupported apiVersion `{v}`"),
                format!("use `{API_VERSION}`"),
            );
        }
    }
    let kind = top
        .require("kind", diags)
        .and_then(|n| decode::string(n, "kind", diags));
    let name = top
        .require("metadata", diags)
        .and_then(|n| decode_metadata(n, diags));
    let spec = match top.get("spec") {
        Some(n) => decode_spec(n, diags),
        None => {
            diags.error(top.pos, "", "missing required field `spec`");
            None
        }
    };
    top.finish(diags);
    if diags.has_errors() {
        return None;
    }
    Some(Policy {
        api_version: api_version?,
        kind: kind?,
        metadata: Metadata { name: name? },
        spec: spec?,
    })
}

fn decode_metadata(node: &Node, diags: &mut Diagnostics) -> Option<String> {
    let mut f = Fields::open(node, "metadata", METADATA, diags)?;
    // Kubernetes-style extras are accepted so policies can live beside manifests.
    for extra in ["namespace", "labels", "annotations"] {
        f.get(extra);
    }
    let name = f
        .require("name", diags)
        .and_then(|n| decode::string(n, "metadata.name", diags));
    if let Some(name) = &name {
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            let pos = f.get("name").map(|n| n.pos).unwrap_or(f.pos);
            diags.error_hint(
                pos,
                "metadata.name",
                format!("`{name}` is not a valid name"),
                "use lower-case letters, digits, `-` and `.`, like a Kubernetes object name",
            );
        }
    }
    f.finish(diags);
    name
}

fn decode_spec(node: &Node, diags: &mut Diagnostics) -> Option<Spec> {
    let mut f = Fields::open(node, "spec", SPEC, diags)?;
    let mode = f
        .get("mode")
        .and_then(|n| {
            decode::keyword(
                n,
                "spec.mode",
                &[("enforce", Mode::Enforce), ("audit", Mode::Audit)],
                diags,
            )
        })
        .unwrap_or_default();
    let enforcement = f
        .get("enforcement")
        .and_then(|n| {
            decode::keyword(
                n,
                "spec.enforcement",
                &[
                    ("strict", Enforcement::Strict),
                    ("best-effort", Enforcement::BestEffort),
                ],
                diags,
            )
        })
        .unwrap_or_default();
    let process = f.get("process").and_then(|n| decode_process(n, diags));
    let file = f.get("file").and_then(|n| decode_file(n, diags));
    let network = f.get("network").and_then(|n| decode_network(n, diags));
    let privileges = f
        .get("privileges")
        .and_then(|n| decode_privileges(n, diags));
    let syscalls = f.get("syscalls").and_then(|n| decode_syscalls(n, diags));
    f.finish(diags);
    Some(Spec {
        mode,
        enforcement,
        process,
        file,
        network,
        privileges,
        syscalls,
    })
}

/// Rule metadata common to every rule kind.
fn decode_meta(f: &mut Fields<'_>, diags: &mut Diagnostics) -> RuleMeta {
    let id = f
        .get("id")
        .and_then(|n| decode::string(n, &f.field_path("id"), diags));
    if let (Some(id), Some(n)) = (&id, f.get("id")) {
        if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
            diags.error(
                n.pos,
                &f.field_path("id"),
                "rule ids are 1-128 printable characters",
            );
        }
    }
    let message = f
        .get("message")
        .and_then(|n| decode::string(n, &f.field_path("message"), diags));
    let severity = f.get("severity").and_then(|n| {
        let p = f.field_path("severity");
        let v = decode::integer(n, &p, diags)?;
        if !(1..=10).contains(&v) {
            diags.error_hint(
                n.pos,
                &p,
                format!("severity {v} is out of range"),
                "severity goes from 1 (low) to 10 (critical)",
            );
            return None;
        }
        Some(v as u8)
    });
    let mut tags = Vec::new();
    if let Some(n) = f.get("tags") {
        let p = f.field_path("tags");
        for (i, item) in decode::list(n, &p, diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            tags.extend(decode::string(item, &index(&p, i), diags));
        }
    }
    RuleMeta {
        id,
        message,
        severity,
        tags,
    }
}

/// An absolute, normalised path: what the kernel will see after resolution.
pub fn check_path(
    node: &Node,
    path: &str,
    is_dir: bool,
    diags: &mut Diagnostics,
) -> Option<String> {
    let text = decode::string(node, path, diags)?;
    let problem = if text.len() > MAX_PATH_LEN {
        Some(format!(
            "path is {} bytes long; the limit is {MAX_PATH_LEN}",
            text.len()
        ))
    } else if !text.starts_with('/') {
        Some(format!("`{text}` is not an absolute path"))
    } else if text.contains('\0') {
        Some("path contains a NUL byte".to_string())
    } else if text.split('/').skip(1).any(|c| c == ".." || c == ".") {
        Some(format!("`{text}` contains `.` or `..`"))
    } else if text.contains("//") {
        Some(format!("`{text}` contains an empty component (`//`)"))
    } else if !is_dir && text.ends_with('/') && text != "/" {
        Some(format!("`{text}` ends with `/` but is given as `path`"))
    } else {
        None
    };
    if let Some(problem) = problem {
        let hint = if is_dir {
            "write the directory as an absolute path such as /var/lib/app/"
        } else if text.ends_with('/') {
            "use `dir:` for a directory"
        } else {
            "write an absolute path such as /usr/bin/app, with no `.` or `..`"
        };
        diags.error_hint(node.pos, path, problem, hint);
        return None;
    }
    if is_dir && text.len() > 1 {
        return Some(text.trim_end_matches('/').to_string() + "/");
    }
    Some(text)
}

/// `path:` or `dir:` (+ `recursive:`), exactly one of them.
fn decode_target(f: &mut Fields<'_>, diags: &mut Diagnostics) -> Option<Target> {
    let path = f.get("path");
    let dir = f.get("dir");
    let recursive = f.get("recursive");
    match (path, dir) {
        (Some(p), None) => {
            if let Some(r) = recursive {
                diags.error_hint(
                    r.pos,
                    &f.field_path("recursive"),
                    "`recursive` applies to `dir` rules only",
                    "use `dir:` for a directory, or remove `recursive`",
                );
            }
            check_path(p, &f.field_path("path"), false, diags).map(|path| Target::Path { path })
        }
        (None, Some(d)) => {
            let recursive = match recursive {
                Some(r) => decode::boolean(r, &f.field_path("recursive"), diags)?,
                None => false,
            };
            check_path(d, &f.field_path("dir"), true, diags)
                .map(|dir| Target::Dir { dir, recursive })
        }
        (Some(p), Some(_)) => {
            diags.error_hint(
                p.pos,
                &f.path,
                "a rule has either `path` or `dir`, not both",
                "split it into two rules",
            );
            None
        }
        (None, None) => {
            diags.error_hint(
                f.pos,
                &f.path,
                "a rule needs `path` or `dir`",
                "e.g. `{path: /usr/bin/app}` or `{dir: /usr/lib/app/, recursive: true}`",
            );
            None
        }
    }
}

fn decode_process(node: &Node, diags: &mut Diagnostics) -> Option<ProcessSection> {
    let mut f = Fields::open(node, "spec.process", PROCESS, diags)?;
    let default = f
        .get("default")
        .and_then(|n| decode::keyword(n, "spec.process.default", DEFAULTS, diags))
        .unwrap_or_default();
    let anonymous_exec = f
        .get("anonymousExec")
        .and_then(|n| decode::keyword(n, "spec.process.anonymousExec", DEFAULTS, diags));
    let mut section = ProcessSection {
        default,
        anonymous_exec,
        ..Default::default()
    };
    for (key, is_deny) in [("allow", false), ("deny", true)] {
        let Some(list) = f.get(key) else { continue };
        let p = f.field_path(key);
        for (i, item) in decode::list(list, &p, diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let ip = index(&p, i);
            let Some(mut rf) = Fields::open(item, &ip, PROCESS_RULE, diags) else {
                continue;
            };
            let target = decode_target(&mut rf, diags);
            let audit = list_rule_audits(&mut rf, is_deny, diags);
            let meta = decode_meta(&mut rf, diags);
            rf.finish(diags);
            if let Some(target) = target {
                let rule = ProcessRule {
                    target,
                    audit,
                    meta,
                };
                if is_deny {
                    section.deny.push(rule);
                } else {
                    section.allow.push(rule);
                }
            }
        }
    }
    f.finish(diags);
    Some(section)
}

/// `action:` of a rule in an allow or deny list: the list gives the verdict,
/// so only `audit` (log, do not block) changes anything.
fn list_rule_audits(f: &mut Fields<'_>, is_deny: bool, diags: &mut Diagnostics) -> bool {
    let Some(a) = f.get("action") else {
        return false;
    };
    let choices: &[(&str, bool)] = if is_deny {
        &[("deny", false), ("block", false), ("audit", true)]
    } else {
        &[("allow", false)]
    };
    decode::keyword(a, &f.field_path("action"), choices, diags).unwrap_or(false)
}

fn decode_file(node: &Node, diags: &mut Diagnostics) -> Option<FileSection> {
    let mut f = Fields::open(node, "spec.file", FILE, diags)?;
    let mut rules = Vec::new();
    if let Some(list) = f.get("rules") {
        let p = f.field_path("rules");
        for (i, item) in decode::list(list, &p, diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let ip = index(&p, i);
            let Some(mut rf) = Fields::open(item, &ip, FILE_RULE, diags) else {
                continue;
            };
            let target = decode_target(&mut rf, diags);
            let access = rf
                .require("access", diags)
                .and_then(|n| decode_access(n, &rf.field_path("access"), diags));
            let action = rf.require("action", diags).and_then(|n| {
                decode::keyword(
                    n,
                    &rf.field_path("action"),
                    &[
                        ("allow", RuleAction::Allow),
                        ("deny", RuleAction::Deny),
                        ("block", RuleAction::Deny),
                        ("audit", RuleAction::Audit),
                    ],
                    diags,
                )
            });
            let meta = decode_meta(&mut rf, diags);
            rf.finish(diags);
            if let (Some(target), Some(access), Some(action)) = (target, access, action) {
                rules.push(FileRule {
                    target,
                    access,
                    action,
                    meta,
                });
            }
        }
    }
    f.finish(diags);
    Some(FileSection { rules })
}

fn decode_access(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<Vec<Access>> {
    let choices = &[
        ("read", Access::Read),
        ("write", Access::Write),
        ("exec", Access::Exec),
    ];
    let mut out = Vec::new();
    for (i, item) in decode::list(node, path, diags)?.iter().enumerate() {
        if let Some(a) = decode::keyword(item, &index(path, i), choices, diags) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    if out.is_empty() {
        diags.error_hint(
            node.pos,
            path,
            "`access` is empty",
            "list at least one of read, write, exec",
        );
        return None;
    }
    out.sort();
    Some(out)
}

fn decode_network(node: &Node, diags: &mut Diagnostics) -> Option<NetworkSection> {
    let mut f = Fields::open(node, "spec.network", NETWORK, diags)?;
    let raw_sockets = f
        .get("rawSockets")
        .and_then(|n| decode::keyword(n, "spec.network.rawSockets", DEFAULTS, diags))
        .unwrap_or(DefaultAction::Deny);
    let egress = f.get("egress").and_then(|n| decode_egress(n, diags));
    f.finish(diags);
    Some(NetworkSection {
        egress,
        raw_sockets,
    })
}

fn decode_egress(node: &Node, diags: &mut Diagnostics) -> Option<Egress> {
    let mut f = Fields::open(node, "spec.network.egress", EGRESS, diags)?;
    let default = f
        .get("default")
        .and_then(|n| decode::keyword(n, "spec.network.egress.default", DEFAULTS, diags))
        .unwrap_or_default();
    let mut egress = Egress {
        default,
        ..Default::default()
    };
    for (key, is_deny) in [("allow", false), ("deny", true)] {
        let Some(list) = f.get(key) else { continue };
        let p = f.field_path(key);
        for (i, item) in decode::list(list, &p, diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(rule) = decode_net_rule(item, &index(&p, i), is_deny, diags) {
                if is_deny {
                    egress.deny.push(rule);
                } else {
                    egress.allow.push(rule);
                }
            }
        }
    }
    f.finish(diags);
    Some(egress)
}

fn decode_net_rule(
    node: &Node,
    path: &str,
    is_deny: bool,
    diags: &mut Diagnostics,
) -> Option<NetRule> {
    let mut f = Fields::open(node, path, NET_RULE, diags)?;
    let cidr = f
        .require("cidr", diags)
        .and_then(|n| parse_cidr(n, &f.field_path("cidr"), diags));
    let mut ports = Vec::new();
    if let Some(n) = f.get("ports") {
        let p = f.field_path("ports");
        for (i, item) in decode::list(n, &p, diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            ports.extend(parse_port_range(item, &index(&p, i), diags));
        }
        ports.sort();
        ports.dedup();
    }
    let protocol = f
        .get("protocol")
        .and_then(|n| {
            decode::keyword(
                n,
                &f.field_path("protocol"),
                &[
                    ("tcp", Protocol::Tcp),
                    ("udp", Protocol::Udp),
                    ("any", Protocol::Any),
                ],
                diags,
            )
        })
        .unwrap_or_default();
    let audit = list_rule_audits(&mut f, is_deny, diags);
    let meta = decode_meta(&mut f, diags);
    f.finish(diags);
    Some(NetRule {
        cidr: cidr?,
        ports,
        protocol,
        audit,
        meta,
    })
}

/// A CIDR, or a bare address taken as a host route; host bits must be zero.
pub fn parse_cidr(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<IpNet> {
    let text = decode::string(node, path, diags)?;
    let parsed = text
        .parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from));
    let Some(net) = parsed else {
        diags.error_hint(
            node.pos,
            path,
            format!("`{text}` is not a CIDR"),
            "write e.g. 10.96.0.0/12, 192.0.2.7/32 or 2001:db8::/32",
        );
        return None;
    };
    if net.trunc() != net {
        diags.error_hint(
            node.pos,
            path,
            format!("`{text}` has host bits set"),
            format!("did you mean `{}`?", net.trunc()),
        );
        return None;
    }
    Some(net)
}

/// A port (`443`) or an inclusive range (`"8000-8080"`).
pub fn parse_port_range(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<PortRange> {
    let text = decode::string(node, path, diags)?;
    let parse = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p != 0);
    let range = match text.split_once('-') {
        Some((a, b)) => parse(a)
            .zip(parse(b))
            .map(|(first, last)| PortRange { first, last }),
        None => parse(&text).map(|p| PortRange { first: p, last: p }),
    };
    match range {
        Some(r) if r.first <= r.last => Some(r),
        Some(_) => {
            diags.error(node.pos, path, format!("port range `{text}` is reversed"));
            None
        }
        None => {
            diags.error_hint(
                node.pos,
                path,
                format!("`{text}` is not a port or port range"),
                "ports are 1-65535; a range is written \"8000-8080\"",
            );
            None
        }
    }
}

fn decode_privileges(node: &Node, diags: &mut Diagnostics) -> Option<Privileges> {
    let mut f = Fields::open(node, "spec.privileges", PRIVILEGES, diags)?;
    let no_new_privileges = f
        .get("noNewPrivileges")
        .and_then(|n| decode::boolean(n, "spec.privileges.noNewPrivileges", diags));
    let block_setuid = f
        .get("blockSetuid")
        .and_then(|n| decode::boolean(n, "spec.privileges.blockSetuid", diags))
        .unwrap_or(false);
    let capabilities = f.get("capabilities").and_then(|n| {
        let mut c = Fields::open(n, "spec.privileges.capabilities", CAPABILITIES, diags)?;
        let drop = cap_list(&mut c, "drop", diags);
        let add = cap_list(&mut c, "add", diags);
        c.finish(diags);
        Some(Capabilities { drop, add })
    });
    f.finish(diags);
    Some(Privileges {
        no_new_privileges,
        block_setuid,
        capabilities,
    })
}

fn cap_list(f: &mut Fields<'_>, key: &str, diags: &mut Diagnostics) -> Vec<String> {
    let Some(n) = f.get(key) else {
        return Vec::new();
    };
    let p = f.field_path(key);
    let mut out = Vec::new();
    for (i, item) in decode::list(n, &p, diags)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let ip = index(&p, i);
        let Some(name) = decode::string(item, &ip, diags) else {
            continue;
        };
        match caps_names::normalise(&name) {
            Some(cap) if key == "add" && cap == caps_names::ALL => diags.error_hint(
                item.pos,
                &ip,
                "`add: [ALL]` would grant every capability",
                "list the capabilities the workload needs",
            ),
            Some(cap) => {
                if !out.contains(&cap) {
                    out.push(cap);
                }
            }
            None => {
                let all = caps_names::all();
                let names: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
                let full = format!(
                    "CAP_{}",
                    name.to_ascii_uppercase().trim_start_matches("CAP_")
                );
                let hint = crate::diag::closest(&full, &names)
                    .map(|n| format!("did you mean `{}`?", n.trim_start_matches("CAP_")))
                    .unwrap_or_else(|| "see capabilities(7) for the names".into());
                diags.error_hint(item.pos, &ip, format!("unknown capability `{name}`"), hint);
            }
        }
    }
    out
}

fn decode_syscalls(node: &Node, diags: &mut Diagnostics) -> Option<SyscallSection> {
    let mut f = Fields::open(node, "spec.syscalls", SYSCALLS, diags)?;
    let profile = f.get("profile").and_then(|n| match n.as_str() {
        Some(name) => {
            if name != RUNTIME_DEFAULT && !name.starts_with('/') {
                diags.error_hint(
                    n.pos,
                    "spec.syscalls.profile",
                    format!("unknown profile `{name}`"),
                    "use `runtime/default`, an absolute path to an OCI seccomp profile, or the profile inline",
                );
                return None;
            }
            Some(ProfileRef::Named(name.to_string()))
        }
        None => seccomp_profile::decode_profile(n, "spec.syscalls.profile", diags)
            .map(ProfileRef::Inline),
    });
    let mut deny = Vec::new();
    if let Some(list) = f.get("deny") {
        let p = f.field_path("deny");
        for (i, item) in decode::list(list, &p, diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let ip = index(&p, i);
            let rule = if let Some(name) = item.as_str() {
                Some(SyscallRule {
                    name: name.to_string(),
                    meta: RuleMeta::default(),
                })
            } else {
                Fields::open(item, &ip, SYSCALL_RULE, diags).and_then(|mut rf| {
                    let name = rf
                        .require("name", diags)
                        .and_then(|n| decode::string(n, &rf.field_path("name"), diags));
                    let meta = decode_meta(&mut rf, diags);
                    rf.finish(diags);
                    Some(SyscallRule { name: name?, meta })
                })
            };
            if let Some(rule) = rule {
                check_syscall_name(&rule.name, item, &ip, false, diags);
                deny.push(rule);
            }
        }
    }
    f.finish(diags);
    Some(SyscallSection { profile, deny })
}
