//! From text to validated policies: dispatch by document kind, resolve seccomp
//! profile files, check limits and overlaps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostics;
use crate::model::*;
use crate::seccomp_profile::{decode_profile, SeccompProfile};
use crate::yaml::{parse_documents, Node, Pos};
use crate::{kubearmor, parse};

/// Where a document came from: decides how its policies are named when printing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Palisade,
    KubeArmor,
    SeccompProfile,
}

#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    pub policy: Policy,
    pub source: SourceKind,
    /// Profiles named by path in `spec.syscalls.profile`, read at load time.
    pub profiles: BTreeMap<String, SeccompProfile>,
    pub pos: Pos,
}

#[derive(Debug, Default)]
pub struct Loaded {
    pub policies: Vec<LoadedPolicy>,
    pub diags: Diagnostics,
}

/// Options for reading a document.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Used to name a policy imported from a bare seccomp profile.
    pub file_stem: Option<String>,
    /// When false, a profile path is an error (inline annotations must not read node files).
    pub allow_profile_files: bool,
}

pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;

pub fn load_str(source: &str, opts: &LoadOptions) -> Loaded {
    let mut out = Loaded::default();
    if source.len() > MAX_DOCUMENT_BYTES {
        out.diags.error(
            Pos { line: 1, col: 1 },
            "",
            format!(
                "document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
                source.len()
            ),
        );
        return out;
    }
    let docs = match parse_documents(source) {
        Ok(d) => d,
        Err(e) => {
            out.diags.error_hint(
                e.pos,
                "",
                format!("YAML syntax: {}", e.message),
                "check indentation and quoting",
            );
            return out;
        }
    };
    if docs.iter().all(|d| d.is_null()) {
        out.diags
            .error(Pos { line: 1, col: 1 }, "", "the document is empty");
        return out;
    }
    for doc in docs.iter().filter(|d| !d.is_null()) {
        load_document(doc, opts, &mut out);
    }
    out
}

pub fn load_file(path: &Path) -> std::io::Result<Loaded> {
    let source = std::fs::read_to_string(path)?;
    let opts = LoadOptions {
        file_stem: path
            .file_stem()
            .map(|s| s.to_string_lossy().to_ascii_lowercase().replace('_', "-")),
        allow_profile_files: true,
    };
    Ok(load_str(&source, &opts))
}

fn kind_of(doc: &Node) -> Option<String> {
    let crate::yaml::Value::Map(entries) = &doc.value else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("kind"))
        .and_then(|(_, v)| v.as_str().map(str::to_string))
}

fn has_key(doc: &Node, key: &str) -> bool {
    matches!(&doc.value, crate::yaml::Value::Map(e) if e.iter().any(|(k, _)| k.as_str() == Some(key)))
}

fn load_document(doc: &Node, opts: &LoadOptions, out: &mut Loaded) {
    let mut diags = Diagnostics::default();
    let (policy, source) = match kind_of(doc).as_deref() {
        Some(KIND) => (parse::decode_policy(doc, &mut diags), SourceKind::Palisade),
        Some("KubeArmorPolicy" | "KubeArmorClusterPolicy" | "KubeArmorHostPolicy") => (
            kubearmor::decode_kubearmor(doc, &mut diags),
            SourceKind::KubeArmor,
        ),
        Some(other) => {
            diags.error_hint(
                doc.pos,
                "kind",
                format!("unsupported kind `{other}`"),
                "use `Policy` (apiVersion palisade.dev/v1), `KubeArmorPolicy` or `KubeArmorClusterPolicy`",
            );
            (None, SourceKind::Palisade)
        }
        None if has_key(doc, "defaultAction") => {
            let profile = decode_profile(doc, "", &mut diags);
            let name = opts
                .file_stem
                .clone()
                .unwrap_or_else(|| "seccomp-profile".into());
            (
                profile.map(|p| Policy {
                    api_version: API_VERSION.into(),
                    kind: KIND.into(),
                    metadata: Metadata { name },
                    spec: Spec {
                        syscalls: Some(SyscallSection {
                            profile: Some(ProfileRef::Inline(p)),
                            deny: Vec::new(),
                        }),
                        ..Default::default()
                    },
                }),
                SourceKind::SeccompProfile,
            )
        }
        None => {
            diags.error_hint(
                doc.pos,
                "kind",
                "missing required field `kind`",
                "a Palisade policy starts with `apiVersion: palisade.dev/v1` and `kind: Policy`",
            );
            (None, SourceKind::Palisade)
        }
    };
    let mut profiles = BTreeMap::new();
    if let Some(policy) = &policy {
        check_limits_and_overlaps(policy, doc.pos, &mut diags);
        if let Some(ProfileRef::Named(name)) = policy
            .spec
            .syscalls
            .as_ref()
            .and_then(|s| s.profile.as_ref())
        {
            if name != RUNTIME_DEFAULT {
                match resolve_profile_file(name, opts, doc.pos, &mut diags) {
                    Some(p) => {
                        profiles.insert(name.clone(), p);
                    }
                    None => {
                        out.diags.extend(diags);
                        return;
                    }
                }
            }
        }
    }
    let failed = diags.has_errors();
    out.diags.extend(diags);
    if let (Some(policy), false) = (policy, failed) {
        out.policies.push(LoadedPolicy {
            policy,
            source,
            profiles,
            pos: doc.pos,
        });
    }
}

fn resolve_profile_file(
    name: &str,
    opts: &LoadOptions,
    pos: Pos,
    diags: &mut Diagnostics,
) -> Option<SeccompProfile> {
    let field = "spec.syscalls.profile";
    if !opts.allow_profile_files {
        diags.error_hint(
            pos,
            field,
            format!("profile file `{name}` cannot be used here"),
            "inline policies may use `runtime/default` or an inline profile, not node files",
        );
        return None;
    }
    let path = PathBuf::from(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            diags.error(
                pos,
                field,
                format!("cannot read seccomp profile `{name}`: {e}"),
            );
            return None;
        }
    };
    let docs = match parse_documents(&text) {
        Ok(d) => d,
        Err(e) => {
            diags.error(
                pos,
                field,
                format!("{name}:{}:{}: {}", e.pos.line, e.pos.col, e.message),
            );
            return None;
        }
    };
    let mut inner = Diagnostics::default();
    let profile = docs.first().and_then(|d| decode_profile(d, "", &mut inner));
    for d in inner.errors() {
        diags.error(
            pos,
            field,
            format!("{name}:{}:{}: {}", d.pos.line, d.pos.col, d.message),
        );
    }
    if inner.has_errors() {
        return None;
    }
    profile
}

fn check_limits_and_overlaps(policy: &Policy, pos: Pos, diags: &mut Diagnostics) {
    let spec = &policy.spec;
    let count = spec
        .process
        .as_ref()
        .map_or(0, |p| p.allow.len() + p.deny.len())
        + spec.file.as_ref().map_or(0, |f| f.rules.len())
        + spec
            .network
            .as_ref()
            .and_then(|n| n.egress.as_ref())
            .map_or(0, |e| e.allow.len() + e.deny.len())
        + spec.syscalls.as_ref().map_or(0, |s| s.deny.len());
    if count > MAX_RULES {
        diags.error_hint(
            pos,
            "spec",
            format!("{count} rules; the limit is {MAX_RULES}"),
            "merge rules with `dir:` and `recursive: true`",
        );
    }
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    let metas = spec
        .process
        .iter()
        .flat_map(|p| p.allow.iter().chain(&p.deny).map(|r| &r.meta))
        .chain(
            spec.file
                .iter()
                .flat_map(|f| f.rules.iter().map(|r| &r.meta)),
        )
        .chain(
            spec.network
                .iter()
                .flat_map(|n| n.egress.iter())
                .flat_map(|e| e.allow.iter().chain(&e.deny).map(|r| &r.meta)),
        )
        .chain(
            spec.syscalls
                .iter()
                .flat_map(|s| s.deny.iter().map(|r| &r.meta)),
        );
    for meta in metas {
        if let Some(id) = &meta.id {
            *ids.entry(id).or_default() += 1;
        }
    }
    for (id, n) in ids {
        if n > 1 {
            diags.error_hint(
                pos,
                "spec",
                format!("rule id `{id}` is used by {n} rules"),
                "rule ids must be unique so events name one rule",
            );
        }
    }
    if let Some(p) = &spec.process {
        let denied: std::collections::HashSet<&Target> = p.deny.iter().map(|d| &d.target).collect();
        for a in p.allow.iter().filter(|a| denied.contains(&a.target)) {
            diags.warning(
                pos,
                "spec.process",
                format!(
                    "`{}` is both allowed and denied; deny wins",
                    a.target.location()
                ),
            );
        }
    }
    if let Some(f) = &spec.file {
        let mut seen: std::collections::HashMap<(&Target, &[Access]), RuleAction> =
            std::collections::HashMap::new();
        for r in &f.rules {
            if let Some(previous) = seen.insert((&r.target, r.access.as_slice()), r.action) {
                let note = if previous == r.action {
                    "is listed twice".to_string()
                } else {
                    "has conflicting rules; on a tie deny wins".to_string()
                };
                diags.warning(
                    pos,
                    "spec.file.rules",
                    format!("`{}` {note}", r.target.location()),
                );
            }
        }
    }
}
