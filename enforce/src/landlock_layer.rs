//! Landlock from a plan. Landlock only grants: a ruleset handles some rights
//! and allows them beneath listed paths. Palisade's "most specific rule wins"
//! model is compiled to grants by walking from the root towards every rule:
//! a directory with no rule below it is granted whole; one with rules below
//! is entered and its entries handled one by one. Symlinks are never granted
//! (their targets are reached on their own path). Runs in the parent: the
//! child only calls restrict_self().

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use landlock::{
    AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, ABI,
};
use palisade_policy::model::{Access as PolicyAccess, DefaultAction, Mode, Target};
use palisade_policy::plan::{Layer, PathRule, Plan, RuleVerdict};

use crate::EnforceError;

const MAX_DEPTH: usize = 64;
const ABI_USED: ABI = ABI::V3;

/// The Landlock rights a policy access maps to. Write covers creating,
/// removing and renaming (REFER), so a denied tree cannot be altered either.
fn rights_for(access: PolicyAccess) -> BitFlags<AccessFs> {
    match access {
        PolicyAccess::Read => AccessFs::ReadFile | AccessFs::ReadDir,
        PolicyAccess::Write => {
            AccessFs::WriteFile
                | AccessFs::Truncate
                | AccessFs::RemoveFile
                | AccessFs::RemoveDir
                | AccessFs::MakeReg
                | AccessFs::MakeDir
                | AccessFs::MakeSym
                | AccessFs::MakeFifo
                | AccessFs::MakeSock
                | AccessFs::MakeChar
                | AccessFs::MakeBlock
                | AccessFs::Refer
        }
        PolicyAccess::Exec => AccessFs::Execute.into(),
    }
}

/// A rule as the walk sees it, with its target resolved to a real path.
#[derive(Debug, Clone)]
struct WalkRule {
    path: PathBuf,
    kind: Kind,
    allow: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    File,
    Direct,
    Tree,
}

pub struct PreparedLandlock {
    pub ruleset: RulesetCreated,
    pub rules: usize,
}

fn resolve(root: &Path, location: &str) -> PathBuf {
    let p = root.join(location.trim_start_matches('/'));
    std::fs::canonicalize(&p).unwrap_or(p)
}

fn walk_rules(rules: &[&PathRule], root: &Path) -> Vec<WalkRule> {
    rules
        .iter()
        .map(|r| WalkRule {
            path: resolve(root, r.target.location()),
            kind: match r.target {
                Target::Path { .. } => Kind::File,
                Target::Dir {
                    recursive: true, ..
                } => Kind::Tree,
                Target::Dir { .. } => Kind::Direct,
            },
            allow: r.verdict == RuleVerdict::Allow,
        })
        .collect()
}

/// Grants for one right, given its rules and default.
fn walk(dir: &Path, allowed: bool, rules: &[WalkRule], depth: usize, out: &mut Vec<PathBuf>) {
    // Rules exactly here decide this node (deny wins a tie).
    let here: Vec<&WalkRule> = rules
        .iter()
        .filter(|r| r.path == dir && r.kind != Kind::Direct)
        .collect();
    let allowed = if here.is_empty() {
        allowed
    } else {
        here.iter().all(|r| r.allow)
    };
    let direct: Vec<&WalkRule> = rules
        .iter()
        .filter(|r| r.path == dir && r.kind == Kind::Direct)
        .collect();
    let below = rules
        .iter()
        .any(|r| r.path != dir && r.path.starts_with(dir));
    if !below && direct.is_empty() {
        if allowed {
            out.push(dir.to_path_buf());
        }
        return;
    }
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() || depth >= MAX_DEPTH {
        // A file with rules "below" cannot happen; too deep: grant nothing (fail closed).
        if allowed && !meta.is_dir() {
            out.push(dir.to_path_buf());
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_symlink() {
            continue;
        }
        let mut child_allowed = allowed;
        if !direct.is_empty() && !ft.is_dir() {
            child_allowed = direct.iter().all(|r| r.allow);
        }
        walk(&path, child_allowed, rules, depth + 1, out);
    }
}

/// Executables need their ELF interpreter to be executable too.
fn interpreters(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = paths.iter().filter_map(|p| elf_interpreter(p)).collect();
    for known in [
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/ld-linux-aarch64.so.1",
        "/lib/ld-musl-x86_64.so.1",
        "/lib/ld-musl-aarch64.so.1",
    ] {
        out.push(PathBuf::from(known));
    }
    out.into_iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect()
}

/// PT_INTERP of a 64-bit little-endian ELF file, if it has one.
pub(crate) fn elf_interpreter(path: &Path) -> Option<PathBuf> {
    let data = std::fs::read(path).ok()?;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let phoff = u64_at(0x20)? as usize;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p_type = data.get(ph..ph + 4)?;
        if u32::from_le_bytes(p_type.try_into().ok()?) == 3 {
            let off = u64_at(ph + 8)? as usize;
            let size = u64_at(ph + 32)? as usize;
            let raw = data.get(off..off + size)?;
            let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
            return Some(PathBuf::from(
                String::from_utf8_lossy(&raw[..end]).into_owned(),
            ));
        }
    }
    None
}

/// Builds the ruleset for `plan` against the file tree under `root`.
/// `None` when the plan has nothing for Landlock (or in audit mode: Landlock cannot audit).
pub fn prepare(plan: &Plan, root: &Path) -> Result<Option<PreparedLandlock>, EnforceError> {
    if plan.mode == Mode::Audit {
        return Ok(None);
    }
    let carried =
        |r: &&PathRule| r.layers.contains(&Layer::Landlock) && r.verdict != RuleVerdict::Audit;
    let file_rules: Vec<&PathRule> = plan.file.iter().filter(carried).collect();
    let mut exec_rules: Vec<&PathRule> = plan.exec.rules.iter().filter(carried).collect();
    exec_rules.extend(
        plan.file
            .iter()
            .filter(carried)
            .filter(|r| r.access.contains(&PolicyAccess::Exec)),
    );
    let exec_handled = plan.exec.default == DefaultAction::Deny || !exec_rules.is_empty();
    if file_rules.is_empty() && !exec_handled {
        return Ok(None);
    }

    let mut grants: BTreeMap<PathBuf, BitFlags<AccessFs>> = BTreeMap::new();
    let mut handled: BitFlags<AccessFs> = BitFlags::empty();
    for access in [PolicyAccess::Read, PolicyAccess::Write] {
        let rules: Vec<&PathRule> = file_rules
            .iter()
            .copied()
            .filter(|r| r.access.contains(&access))
            .collect();
        if rules.is_empty() {
            continue;
        }
        let rights = rights_for(access);
        handled |= rights;
        let mut out = Vec::new();
        walk(
            Path::new("/").join(root).as_path(),
            true,
            &walk_rules(&rules, root),
            0,
            &mut out,
        );
        for p in out {
            *grants.entry(p).or_insert_with(BitFlags::empty) |= rights;
        }
    }
    if exec_handled {
        handled |= AccessFs::Execute;
        let mut rules = walk_rules(&exec_rules, root);
        if plan.exec.default == DefaultAction::Deny {
            let allowed: Vec<PathBuf> = rules
                .iter()
                .filter(|r| r.allow)
                .map(|r| r.path.clone())
                .collect();
            for interp in interpreters(&allowed) {
                rules.push(WalkRule {
                    path: interp,
                    kind: Kind::File,
                    allow: true,
                });
            }
        }
        let mut out = Vec::new();
        walk(
            root,
            plan.exec.default == DefaultAction::Allow,
            &rules,
            0,
            &mut out,
        );
        for p in out {
            *grants.entry(p).or_insert_with(BitFlags::empty) |= AccessFs::Execute;
        }
    }

    let err = |e: &dyn std::fmt::Display| EnforceError::Landlock(e.to_string());
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(handled)
        .map_err(|e| err(&e))?
        .create()
        .map_err(|e| err(&e))?;
    let file_rights = AccessFs::from_file(ABI_USED);
    let mut count = 0;
    for (path, rights) in grants {
        let Ok(fd) = PathFd::new(&path) else { continue };
        let is_dir = std::fs::metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        let rights = if is_dir { rights } else { rights & file_rights };
        if rights.is_empty() {
            continue;
        }
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .map_err(|e| EnforceError::Landlock(format!("rule for {}: {e}", path.display())))?;
        count += 1;
    }
    Ok(Some(PreparedLandlock {
        ruleset,
        rules: count,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_grants_siblings_of_a_denied_file_and_not_the_file() {
        let dir = std::env::temp_dir().join(format!("pal-walk-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc/ssl")).unwrap();
        std::fs::write(dir.join("etc/shadow"), "").unwrap();
        std::fs::write(dir.join("etc/hosts"), "").unwrap();
        std::fs::write(dir.join("etc/ssl/key"), "").unwrap();
        let rules = vec![
            WalkRule {
                path: dir.join("etc/shadow"),
                kind: Kind::File,
                allow: false,
            },
            WalkRule {
                path: dir.join("etc/ssl"),
                kind: Kind::Tree,
                allow: false,
            },
            WalkRule {
                path: dir.join("etc/ssl/key"),
                kind: Kind::File,
                allow: true,
            },
        ];
        let mut out = Vec::new();
        walk(&dir, true, &rules, 0, &mut out);
        assert!(out.contains(&dir.join("etc/hosts")));
        assert!(out.contains(&dir.join("etc/ssl/key")));
        assert!(!out.contains(&dir.join("etc/shadow")));
        assert!(!out
            .iter()
            .any(|p| p == &dir.join("etc") || p == &dir.join("etc/ssl")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_the_interpreter_of_a_dynamic_binary() {
        let interp = elf_interpreter(Path::new("/usr/bin/env"));
        assert!(interp.is_some_and(|p| p.to_string_lossy().contains("ld-linux")));
    }
}
