//! `KubeArmorPolicy` / `KubeArmorClusterPolicy` documents, translated into the
//! Palisade model. Fields Palisade cannot honour are errors naming the field.

use crate::caps_names;
use crate::decode::{self, index, Fields};
use crate::diag::Diagnostics;
use crate::model::*;
use crate::parse::check_path;
use crate::yaml::Node;

const TOP: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const SPEC: &[&str] = &[
    "selector",
    "severity",
    "tags",
    "message",
    "action",
    "process",
    "file",
    "network",
    "capabilities",
    "syscalls",
];
const MATCHERS: &[&str] = &[
    "matchPaths",
    "matchDirectories",
    "matchPatterns",
    "severity",
    "tags",
    "message",
    "action",
];
const PATH_RULE: &[&str] = &[
    "path",
    "readOnly",
    "ownerOnly",
    "fromSource",
    "severity",
    "tags",
    "message",
    "action",
];
const DIR_RULE: &[&str] = &[
    "dir",
    "recursive",
    "readOnly",
    "ownerOnly",
    "fromSource",
    "severity",
    "tags",
    "message",
    "action",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum KaAction {
    Allow,
    Audit,
    Block,
}

const ACTIONS: &[(&str, KaAction)] = &[
    ("Allow", KaAction::Allow),
    ("Audit", KaAction::Audit),
    ("Block", KaAction::Block),
];

/// Inherited from the spec, then the section, then the rule.
#[derive(Clone, Default)]
struct Inherited {
    action: Option<KaAction>,
    severity: Option<u8>,
    tags: Vec<String>,
    message: Option<String>,
}

fn read_inherited(f: &mut Fields<'_>, parent: &Inherited, diags: &mut Diagnostics) -> Inherited {
    let mut out = parent.clone();
    if let Some(n) = f.get("action") {
        out.action = decode::keyword(n, &f.field_path("action"), ACTIONS, diags).or(out.action);
    }
    if let Some(n) = f.get("severity") {
        let p = f.field_path("severity");
        if let Some(v) = decode::integer(n, &p, diags) {
            if (1..=10).contains(&v) {
                out.severity = Some(v as u8);
            } else {
                diags.error(n.pos, &p, format!("severity {v} is out of range 1-10"));
            }
        }
    }
    if let Some(n) = f.get("tags") {
        let p = f.field_path("tags");
        out.tags = decode::list(n, &p, diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, t)| decode::string(t, &index(&p, i), diags))
            .collect();
    }
    if let Some(n) = f.get("message") {
        out.message = decode::string(n, &f.field_path("message"), diags);
    }
    out
}

fn meta(inh: &Inherited) -> RuleMeta {
    RuleMeta {
        id: None,
        message: inh.message.clone(),
        severity: inh.severity,
        tags: inh.tags.clone(),
    }
}

fn unsupported(f: &mut Fields<'_>, key: &str, why: &str, diags: &mut Diagnostics) {
    if f.get(key).is_some() {
        let pos = f.key_pos(key).unwrap_or(f.pos);
        diags.error_hint(
            pos,
            &f.field_path(key),
            format!("`{key}` cannot be honoured by Palisade"),
            why.to_string(),
        );
    }
}

/// One matched path or directory from a KubeArmor section.
struct Matched {
    target: Target,
    read_only: bool,
    inh: Inherited,
}

fn matchers(
    node: &Node,
    path: &str,
    parent: &Inherited,
    allow_read_only: bool,
    diags: &mut Diagnostics,
) -> Vec<Matched> {
    let Some(mut f) = Fields::open(node, path, MATCHERS, diags) else {
        return Vec::new();
    };
    let section = read_inherited(&mut f, parent, diags);
    unsupported(
        &mut f,
        "matchPatterns",
        "glob patterns are not supported; list paths or directories",
        diags,
    );
    let mut out = Vec::new();
    for (key, fields, is_dir) in [
        ("matchPaths", PATH_RULE, false),
        ("matchDirectories", DIR_RULE, true),
    ] {
        let Some(list) = f.get(key) else { continue };
        let p = f.field_path(key);
        for (i, item) in decode::list(list, &p, diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let ip = index(&p, i);
            let Some(mut rf) = Fields::open(item, &ip, fields, diags) else {
                continue;
            };
            let inh = read_inherited(&mut rf, &section, diags);
            unsupported(
                &mut rf,
                "fromSource",
                "rules scoped to a parent binary are not supported",
                diags,
            );
            unsupported(
                &mut rf,
                "ownerOnly",
                "owner-only rules are not supported",
                diags,
            );
            let read_only = match rf.get("readOnly") {
                Some(n) if !allow_read_only => {
                    diags.error(
                        n.pos,
                        &rf.field_path("readOnly"),
                        "`readOnly` applies to file rules only",
                    );
                    false
                }
                Some(n) => decode::boolean(n, &rf.field_path("readOnly"), diags).unwrap_or(false),
                None => false,
            };
            let target = if is_dir {
                let recursive = rf
                    .get("recursive")
                    .and_then(|n| decode::boolean(n, &rf.field_path("recursive"), diags))
                    .unwrap_or(false);
                rf.require("dir", diags)
                    .and_then(|n| check_path(n, &rf.field_path("dir"), true, diags))
                    .map(|dir| Target::Dir { dir, recursive })
            } else {
                rf.require("path", diags)
                    .and_then(|n| check_path(n, &rf.field_path("path"), false, diags))
                    .map(|path| Target::Path { path })
            };
            rf.finish(diags);
            if let Some(target) = target {
                out.push(Matched {
                    target,
                    read_only,
                    inh,
                });
            }
        }
    }
    f.finish(diags);
    out
}

/// Decodes a KubeArmor document into a Palisade policy.
pub fn decode_kubearmor(doc: &Node, diags: &mut Diagnostics) -> Option<Policy> {
    let mut top = Fields::open(doc, "", TOP, diags)?;
    top.get("apiVersion");
    top.get("kind");
    let name = top.require("metadata", diags).and_then(|m| {
        let mut mf = Fields::open(
            m,
            "metadata",
            &["name", "namespace", "labels", "annotations"],
            diags,
        )?;
        for extra in ["namespace", "labels", "annotations"] {
            mf.get(extra);
        }
        let name = mf
            .require("name", diags)
            .and_then(|n| decode::string(n, "metadata.name", diags));
        mf.finish(diags);
        name
    });
    let spec_node = top.require("spec", diags);
    top.finish(diags);
    let spec_node = spec_node?;
    let mut f = Fields::open(spec_node, "spec", SPEC, diags)?;
    let base = read_inherited(&mut f, &Inherited::default(), diags);
    if let Some(sel) = f.get("selector") {
        diags.warning(
            sel.pos,
            "spec.selector",
            "the selector is not used: Palisade binds policies to pods by the palisade.dev/policy annotation or image label",
        );
    }
    unsupported(
        &mut f,
        "syscalls",
        "KubeArmor syscall rules only audit; use `spec.syscalls` of a Palisade policy",
        diags,
    );

    let mut spec = Spec::default();

    if let Some(n) = f.get("process") {
        let mut section = ProcessSection::default();
        for m in matchers(n, "spec.process", &base, false, diags) {
            let rule = ProcessRule {
                target: m.target,
                audit: m.inh.action == Some(KaAction::Audit),
                meta: meta(&m.inh),
            };
            match m.inh.action.unwrap_or(KaAction::Block) {
                KaAction::Allow => {
                    section.default = DefaultAction::Deny;
                    section.allow.push(rule);
                }
                KaAction::Audit | KaAction::Block => section.deny.push(rule),
            }
        }
        spec.process = Some(section);
    }

    if let Some(n) = f.get("file") {
        let mut rules = Vec::new();
        let mut allowlist = false;
        for m in matchers(n, "spec.file", &base, true, diags) {
            let action = m.inh.action.unwrap_or(KaAction::Block);
            // readOnly: reads are fine, writes are what the rule is about.
            let (access, rule_action) = match (action, m.read_only) {
                (KaAction::Allow, true) => (vec![Access::Read], RuleAction::Allow),
                (KaAction::Allow, false) => (vec![Access::Read, Access::Write], RuleAction::Allow),
                (KaAction::Block, true) => (vec![Access::Write], RuleAction::Deny),
                (KaAction::Block, false) => (vec![Access::Read, Access::Write], RuleAction::Deny),
                (KaAction::Audit, true) => (vec![Access::Write], RuleAction::Audit),
                (KaAction::Audit, false) => (vec![Access::Read, Access::Write], RuleAction::Audit),
            };
            allowlist |= action == KaAction::Allow;
            rules.push(FileRule {
                target: m.target,
                access,
                action: rule_action,
                meta: meta(&m.inh),
            });
        }
        if allowlist {
            // KubeArmor's Allow makes the listed paths the only ones reachable.
            rules.push(FileRule {
                target: Target::Dir {
                    dir: "/".into(),
                    recursive: true,
                },
                access: vec![Access::Read, Access::Write],
                action: RuleAction::Deny,
                meta: RuleMeta {
                    id: Some("kubearmor-file-allowlist-default".into()),
                    ..meta(&base)
                },
            });
        }
        spec.file = Some(FileSection { rules });
    }

    if let Some(n) = f.get("network") {
        spec.network = decode_ka_network(n, &base, diags);
    }

    if let Some(n) = f.get("capabilities") {
        spec.privileges = decode_ka_caps(n, &base, diags);
    }
    f.finish(diags);
    if diags.has_errors() {
        return None;
    }
    Some(Policy {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        metadata: Metadata { name: name? },
        spec,
    })
}

/// The entries of a KubeArmor list that each name one thing (`protocol`,
/// `capability`), with the action, severity, tags and message they inherit;
/// `fromSource` is refused. Returns (the named node, its field path, inherited).
fn named_items<'a>(
    f: &mut Fields<'a>,
    list_key: &str,
    item_key: &'static str,
    section: &Inherited,
    diags: &mut Diagnostics,
) -> Vec<(&'a Node, String, Inherited)> {
    let Some(list) = f.get(list_key) else {
        return Vec::new();
    };
    let known: &'static [&'static str] = match item_key {
        "protocol" => &[
            "protocol",
            "fromSource",
            "severity",
            "tags",
            "message",
            "action",
        ],
        _ => &[
            "capability",
            "fromSource",
            "severity",
            "tags",
            "message",
            "action",
        ],
    };
    let p = f.field_path(list_key);
    let mut out = Vec::new();
    for (i, item) in decode::list(list, &p, diags)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let ip = index(&p, i);
        let Some(mut rf) = Fields::open(item, &ip, known, diags) else {
            continue;
        };
        let inh = read_inherited(&mut rf, section, diags);
        unsupported(
            &mut rf,
            "fromSource",
            "rules scoped to a parent binary are not supported",
            diags,
        );
        let node = rf.require(item_key, diags);
        rf.finish(diags);
        if let Some(node) = node {
            out.push((node, format!("{ip}.{item_key}"), inh));
        }
    }
    out
}

fn decode_ka_network(
    node: &Node,
    base: &Inherited,
    diags: &mut Diagnostics,
) -> Option<NetworkSection> {
    let mut f = Fields::open(
        node,
        "spec.network",
        &["matchProtocols", "severity", "tags", "message", "action"],
        diags,
    )?;
    let section = read_inherited(&mut f, base, diags);
    let mut net = NetworkSection {
        egress: None,
        raw_sockets: DefaultAction::Allow,
    };
    let mut egress = Egress::default();
    for (proto_node, proto_path, inh) in
        named_items(&mut f, "matchProtocols", "protocol", &section, diags)
    {
        let Some(proto) = decode::string(proto_node, &proto_path, diags) else {
            continue;
        };
        let action = inh.action.unwrap_or(KaAction::Block);
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "raw" => {
                match action {
                    KaAction::Block => net.raw_sockets = DefaultAction::Deny,
                    KaAction::Allow => net.raw_sockets = DefaultAction::Allow,
                    KaAction::Audit => diags.error(
                        proto_node.pos,
                        &proto_path,
                        "auditing raw sockets is not supported; use Block or Allow",
                    ),
                }
                continue;
            }
            other => {
                diags.error_hint(
                    proto_node.pos,
                    &proto_path,
                    format!("protocol `{other}` cannot be honoured"),
                    "Palisade controls tcp, udp and raw sockets",
                );
                continue;
            }
        };
        for cidr in ["0.0.0.0/0", "::/0"] {
            let rule = NetRule {
                cidr: cidr.parse().ok()?,
                ports: Vec::new(),
                protocol,
                audit: action == KaAction::Audit,
                meta: meta(&inh),
            };
            match action {
                KaAction::Allow => {
                    egress.default = DefaultAction::Deny;
                    egress.allow.push(rule);
                }
                _ => egress.deny.push(rule),
            }
        }
    }
    f.finish(diags);
    if !egress.allow.is_empty() || !egress.deny.is_empty() {
        net.egress = Some(egress);
    }
    Some(net)
}

fn decode_ka_caps(node: &Node, base: &Inherited, diags: &mut Diagnostics) -> Option<Privileges> {
    let mut f = Fields::open(
        node,
        "spec.capabilities",
        &["matchCapabilities", "severity", "tags", "message", "action"],
        diags,
    )?;
    let section = read_inherited(&mut f, base, diags);
    let mut drop = Vec::new();
    let mut add = Vec::new();
    for (cap_node, cp, inh) in
        named_items(&mut f, "matchCapabilities", "capability", &section, diags)
    {
        let Some(name) = decode::string(cap_node, &cp, diags) else {
            continue;
        };
        let Some(cap) = caps_names::normalise(&name) else {
            diags.error(cap_node.pos, &cp, format!("unknown capability `{name}`"));
            continue;
        };
        match inh.action.unwrap_or(KaAction::Block) {
            KaAction::Block => drop.push(cap),
            KaAction::Allow => add.push(cap),
            KaAction::Audit => diags.error_hint(
                cap_node.pos,
                &cp,
                "auditing capability use cannot be honoured",
                "use Block to drop the capability",
            ),
        }
    }
    f.finish(diags);
    if !add.is_empty() {
        // KubeArmor's Allow: only the listed capabilities remain.
        drop = vec![caps_names::ALL.to_string()];
    }
    Some(Privileges {
        no_new_privileges: None,
        block_setuid: false,
        capabilities: Some(Capabilities { drop, add }),
    })
}
