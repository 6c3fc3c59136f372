//! Which policy a container gets, from its OCI spec annotations (container
//! annotation, or the pod's, copied into the spec by CRI). Every failure is an
//! error that names the key and what is wrong; nothing falls back silently.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use palisade_policy::{load_str, LoadOptions, LoadedPolicy};
use sha2::{Digest, Sha256};

pub const POLICY_KEY: &str = "palisade.dev/policy";
pub const INLINE_KEY: &str = "palisade.dev/policy-inline";
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;
pub const DEFAULT_POLICY_DIR: &str = "/etc/palisade/policies";

#[derive(Debug, Clone)]
pub struct Selected {
    pub loaded: LoadedPolicy,
    /// The document as validated; the runtime helper recompiles exactly this.
    pub source: String,
    /// Where it came from: `annotation`, `label`, `default` or `baseline`.
    pub origin: String,
}

/// The node's rules for choosing policies (config.toml).
#[derive(Debug, Clone, Default)]
pub struct NodePolicy {
    pub policy_dir: PathBuf,
    pub default_policy: Option<String>,
    pub baseline_policy: Option<String>,
    pub require_policy: bool,
    pub allow_audit_mode: bool,
}

/// Every policy a container gets: its own (annotation, image label or the
/// node default, first present wins) and the node baseline, which is always
/// enforced as well.
/// A pod's sandbox (pause) container runs no workload code: it gets the
/// baseline only, so a workload allowlist cannot stop the pod from starting.
pub fn select_all(
    annotations: &HashMap<String, String>,
    image_labels: &HashMap<String, String>,
    node: &NodePolicy,
    sandbox: bool,
) -> Result<Vec<Selected>, String> {
    let mut out = Vec::new();
    if sandbox {
        if let Some(name) = &node.baseline_policy {
            out.push(by_name(
                name,
                &node.policy_dir,
                "baseline_policy",
                "baseline",
            )?);
        }
        return Ok(out);
    }
    let workload = match select(annotations, &node.policy_dir)? {
        Some(s) => Some(s),
        None => {
            match select(image_labels, &node.policy_dir).map_err(|e| format!("image label: {e}"))? {
                Some(mut s) => {
                    s.origin = "label".into();
                    Some(s)
                }
                None => match &node.default_policy {
                    Some(name) => Some(by_name(
                        name,
                        &node.policy_dir,
                        "default_policy",
                        "default",
                    )?),
                    None => None,
                },
            }
        }
    };
    match &workload {
        None if node.require_policy => {
            return Err(format!(
                "this node requires a policy (require_policy = true): set `{POLICY_KEY}` or `{INLINE_KEY}`"
            ))
        }
        Some(w) if !node.allow_audit_mode && w.loaded.policy.spec.mode == palisade_policy::model::Mode::Audit => {
            return Err(format!(
                "policy `{}` asks for audit mode, which this node does not allow (allow_audit_mode = false)",
                w.loaded.policy.metadata.name
            ))
        }
        _ => {}
    }
    out.extend(workload);
    if let Some(name) = &node.baseline_policy {
        out.push(by_name(
            name,
            &node.policy_dir,
            "baseline_policy",
            "baseline",
        )?);
    }
    Ok(out)
}

fn by_name(name: &str, dir: &Path, key: &str, origin: &str) -> Result<Selected, String> {
    let path = resolve_name(name.trim(), dir).map_err(|e| format!("{key}: {e}"))?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    let opts = LoadOptions {
        file_stem: None,
        allow_profile_files: true,
    };
    let loaded = render_errors(&path.display().to_string(), &text, &opts)?;
    Ok(Selected {
        loaded,
        source: text,
        origin: origin.into(),
    })
}

fn render_errors(what: &str, source: &str, opts: &LoadOptions) -> Result<LoadedPolicy, String> {
    let loaded = load_str(source, opts);
    if loaded.diags.has_errors() {
        let lines: Vec<String> = loaded
            .diags
            .clone()
            .sorted()
            .iter()
            .filter(|d| d.severity == palisade_policy::Severity::Error)
            .map(|d| d.render(what))
            .collect();
        return Err(lines.join("; "));
    }
    let mut policies = loaded.policies;
    match policies.len() {
        1 => Ok(policies.remove(0)),
        n => Err(format!("{what}: expected one policy, found {n}")),
    }
}

/// `Ok(None)`: no policy was asked for.
pub fn select(
    annotations: &HashMap<String, String>,
    policy_dir: &Path,
) -> Result<Option<Selected>, String> {
    let inline = annotations.get(INLINE_KEY);
    let named = annotations.get(POLICY_KEY);
    if inline.is_some() && named.is_some() {
        return Err(format!(
            "both `{POLICY_KEY}` and `{INLINE_KEY}` are set; give one"
        ));
    }
    for (key, value) in [(INLINE_KEY, inline), (POLICY_KEY, named)] {
        if let Some(v) = value {
            if v.len() > MAX_ANNOTATION_BYTES {
                return Err(format!(
                    "annotation `{key}` is {} bytes; the limit is {MAX_ANNOTATION_BYTES}",
                    v.len()
                ));
            }
        }
    }
    if let Some(text) = inline {
        let opts = LoadOptions {
            file_stem: None,
            allow_profile_files: false,
        };
        let loaded = render_errors(&format!("annotation {INLINE_KEY}"), text, &opts)?;
        return Ok(Some(Selected {
            loaded,
            source: text.clone(),
            origin: "annotation".into(),
        }));
    }
    let Some(name) = named else {
        return Ok(None);
    };
    let path = resolve_name(name.trim(), policy_dir)?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "annotation `{POLICY_KEY}`: cannot read {}: {e}",
            path.display()
        )
    })?;
    let opts = LoadOptions {
        file_stem: None,
        allow_profile_files: true,
    };
    let loaded = render_errors(&path.display().to_string(), &text, &opts)?;
    Ok(Some(Selected {
        loaded,
        source: text,
        origin: "annotation".into(),
    }))
}

fn resolve_name(name: &str, dir: &Path) -> Result<PathBuf, String> {
    if let Some(hex) = name.strip_prefix("sha256:") {
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "annotation `{POLICY_KEY}`: `{name}` is not a sha256 digest"
            ));
        }
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("policy directory {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if let Ok(bytes) = std::fs::read(&p) {
                if hex::encode(Sha256::digest(&bytes)) == hex.to_ascii_lowercase() {
                    return Ok(p);
                }
            }
        }
        return Err(format!("no file in {} has digest {name}", dir.display()));
    }
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !valid {
        return Err(format!(
            "`{name}` is not a policy name (letters, digits, `-`, `_`, `.`)"
        ));
    }
    if let Err(e) = std::fs::read_dir(dir) {
        return Err(format!(
            "cannot read the policy directory {}: {e}",
            dir.display()
        ));
    }
    let path = dir.join(format!("{name}.yaml"));
    if !path.exists() {
        return Err(format!(
            "no policy `{name}` in {} (looked for {})",
            dir.display(),
            path.display()
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn malformed_inline_yaml_names_line_and_column() {
        let a = ann(&[(INLINE_KEY, "apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {name: x}\nspec:\n  mode: enforcing\n")]);
        let e = select(&a, Path::new("/nonexistent")).unwrap_err();
        assert!(
            e.contains("annotation palisade.dev/policy-inline:5:9: error: spec.mode"),
            "{e}"
        );
    }

    #[test]
    fn both_keys_are_refused() {
        let a = ann(&[(INLINE_KEY, "x"), (POLICY_KEY, "web")]);
        assert!(select(&a, Path::new("/x")).unwrap_err().contains("both"));
    }

    #[test]
    fn oversized_annotations_are_refused() {
        let big = "#".repeat(MAX_ANNOTATION_BYTES + 1);
        let a = ann(&[(INLINE_KEY, &big)]);
        assert!(select(&a, Path::new("/x"))
            .unwrap_err()
            .contains("the limit is 262144"));
    }

    #[test]
    fn unknown_names_and_digests_are_refused() {
        let dir = std::env::temp_dir().join(format!("pal-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = ann(&[(POLICY_KEY, "missing")]);
        assert!(select(&a, &dir)
            .unwrap_err()
            .contains("no policy `missing`"));
        let a = ann(&[(POLICY_KEY, &format!("sha256:{}", "0".repeat(64)))]);
        assert!(select(&a, &dir).unwrap_err().contains("no file in"));
        let a = ann(&[(POLICY_KEY, "../etc/passwd")]);
        assert!(select(&a, &dir)
            .unwrap_err()
            .contains("is not a policy name"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
