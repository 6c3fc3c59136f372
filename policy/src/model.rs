//! The Palisade policy document as users write it (INTERFACE.md, "Policy document").
//!
//! Serialisation here is the printed form (`policy convert`, round-trip tests);
//! parsing goes through `parse.rs`, which reports positions.

use ipnet::IpNet;
use serde::Serialize;

use crate::seccomp_profile::SeccompProfile;

pub const API_VERSION: &str = "palisade.dev/v1";
pub const KIND: &str = "Policy";
pub const MAX_PATH_LEN: usize = 4096;
pub const MAX_RULES: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Metadata {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub mode: Mode,
    pub enforcement: Enforcement,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Privileges>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<SyscallSection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// A rule that no layer on this host can carry stops the start.
    #[default]
    Strict,
    /// Such rules are skipped and listed in the `confined` event.
    BestEffort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    #[default]
    Allow,
    Deny,
}

/// Metadata every rule may carry; events repeat it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, PartialOrd, Ord, Hash)]
pub struct RuleMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A file-system target: one path, or a directory (its direct entries, or the whole tree).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum Target {
    Path {
        path: String,
    },
    Dir {
        dir: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        recursive: bool,
    },
}

impl Target {
    pub fn location(&self) -> &str {
        match self {
            Target::Path { path } => path,
            Target::Dir { dir, .. } => dir,
        }
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Allow,
    Deny,
    /// Log, do not block.
    Audit,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ProcessSection {
    pub default: DefaultAction,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<ProcessRule>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<ProcessRule>,
    /// Programs run from a file with no name (memfd + fexecve, O_TMPFILE,
    /// a deleted file): denied unless set to allow, once `process` is present.
    #[serde(rename = "anonymousExec", skip_serializing_if = "Option::is_none")]
    pub anonymous_exec: Option<DefaultAction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ProcessRule {
    #[serde(flatten)]
    pub target: Target,
    /// Only in `deny`: log the exec instead of stopping it.
    #[serde(
        skip_serializing_if = "std::ops::Not::not",
        serialize_with = "audit_flag"
    )]
    #[serde(rename = "action")]
    pub audit: bool,
    #[serde(flatten)]
    pub meta: RuleMeta,
}

fn audit_flag<S: serde::Serializer>(_: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("audit")
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct FileSection {
    pub rules: Vec<FileRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
    Exec,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileRule {
    #[serde(flatten)]
    pub target: Target,
    pub access: Vec<Access>,
    pub action: RuleAction,
    #[serde(flatten)]
    pub meta: RuleMeta,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
    /// Raw and packet sockets bypass address checks, so they are refused unless allowed.
    pub raw_sockets: DefaultAction,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Egress {
    pub default: DefaultAction,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<NetRule>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<NetRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    #[default]
    Any,
}

/// An inclusive port range; a single port has `first == last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_u16(self.first)
        } else {
            s.serialize_str(&format!("{}-{}", self.first, self.last))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NetRule {
    pub cidr: IpNet,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
    pub protocol: Protocol,
    #[serde(
        skip_serializing_if = "std::ops::Not::not",
        serialize_with = "audit_flag"
    )]
    #[serde(rename = "action")]
    pub audit: bool,
    #[serde(flatten)]
    pub meta: RuleMeta,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Privileges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_new_privileges: Option<bool>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub block_setuid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
}

/// Capability names normalised to `CAP_*` upper case; `ALL` stays `ALL`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SyscallSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<SyscallRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ProfileRef {
    /// `runtime/default`, or a path to an OCI seccomp profile resolved when the policy is loaded.
    Named(String),
    Inline(SeccompProfile),
}

pub const RUNTIME_DEFAULT: &str = "runtime/default";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SyscallRule {
    pub name: String,
    #[serde(flatten)]
    pub meta: RuleMeta,
}
