//! The node configuration file (INTERFACE.md, "Node configuration").
//! Unknown keys are an error: a typo must not silently weaken a node.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::container::NodeSettings;

pub const DEFAULT_CONFIG: &str = "/etc/palisade/config.toml";
/// Overrides the file for tests and development; containerd's `ConfigPath` option wins over it.
pub const CONFIG_ENV: &str = "PALISADE_CONFIG";

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub policy_dir: Option<PathBuf>,
    pub default_policy: Option<String>,
    pub baseline_policy: Option<String>,
    #[serde(default)]
    pub require_policy: bool,
    pub allow_audit_mode: Option<bool>,
    pub events_path: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

impl NodeConfig {
    pub fn settings(&self) -> NodeSettings {
        let d = NodeSettings::default();
        NodeSettings {
            policy_dir: self.policy_dir.clone().unwrap_or(d.policy_dir),
            events_path: self.events_path.clone().unwrap_or(d.events_path),
            state_dir: self.state_dir.clone().unwrap_or(d.state_dir),
            default_policy: self.default_policy.clone(),
            baseline_policy: self.baseline_policy.clone(),
            require_policy: self.require_policy,
            allow_audit_mode: self.allow_audit_mode.unwrap_or(true),
        }
    }
}

pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, String> {
    toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `explicit`: the runtime option ConfigPath. A missing default file means defaults;
/// a missing explicit file is an error.
pub fn load(explicit: Option<&Path>) -> Result<NodeConfig, String> {
    let env = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
    let (path, required) = match (explicit, env) {
        (Some(p), _) => (p.to_path_buf(), true),
        (None, Some(p)) => (p, true),
        (None, None) => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            Ok(NodeConfig::default())
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors() {
        let e = parse("policy_dirr = \"/x\"\n", Path::new("c.toml")).unwrap_err();
        assert!(e.contains("unknown field `policy_dirr`"), "{e}");
    }

    #[test]
    fn every_documented_key_parses() {
        let c = parse(
            "policy_dir = \"/p\"\ndefault_policy = \"web\"\nbaseline_policy = \"base\"\nrequire_policy = true\nallow_audit_mode = false\nevents_path = \"/e.jsonl\"\nstate_dir = \"/s\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert!(c.require_policy);
        assert_eq!(c.settings().events_path, PathBuf::from("/e.jsonl"));
    }
}
