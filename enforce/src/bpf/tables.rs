//! The exec and file rule tables of a plan, keyed as the BPF programs look
//! them up: by file identity (device + inode, resolved inside the workload's
//! root), or by path for targets that did not exist at setup.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{File, Metadata};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use palisade_policy::model::{Access, DefaultAction, Target};
use palisade_policy::plan::{Plan, RuleVerdict};

use super::abi::*;

#[derive(Debug, Default)]
pub struct RuleTables {
    pub exec_inodes: HashMap<InodeKey, InodeRule>,
    /// Exact-path exec rules whose file did not exist at setup.
    pub exec_paths: HashMap<String, InodeRule>,
    pub file_inodes: HashMap<InodeKey, FileRule>,
    pub file_paths: HashMap<String, FileRule>,
    /// Rules that neither an identity nor a path key can carry (a directory
    /// that did not exist, a path longer than the kernel key).
    pub unresolved: Vec<String>,
}

pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = libc::major(st_dev) as u64;
    let minor = libc::minor(st_dev) as u64;
    (major << 20) | minor
}

pub fn verdict_code(v: RuleVerdict) -> u8 {
    match v {
        RuleVerdict::Allow => VERDICT_ALLOW,
        RuleVerdict::Deny => VERDICT_DENY,
        RuleVerdict::Audit => VERDICT_AUDIT,
    }
}

/// On a tie between rules on one target, deny wins, then audit.
fn rank(verdict: u8) -> u8 {
    match verdict {
        VERDICT_DENY => 2,
        VERDICT_AUDIT => 1,
        _ => 0,
    }
}

fn kind_of(t: &Target) -> u8 {
    match t {
        Target::Path { .. } => MATCH_FILE,
        Target::Dir {
            recursive: true, ..
        } => MATCH_DIR_TREE,
        Target::Dir { .. } => MATCH_DIR_DIRECT,
    }
}

/// stat(2) of `location` as the workload sees it: symlinks are resolved
/// inside `root` (RESOLVE_IN_ROOT), so a container's absolute symlinks never
/// reach the host's files.
pub fn stat_in_root(root: &Path, location: &str) -> std::io::Result<Metadata> {
    if root == Path::new("/") {
        return std::fs::metadata(location);
    }
    let root_c = CString::new(root.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: plain open(2) of a NUL-terminated path; the fd is owned below.
    let root_fd = unsafe {
        libc::open(
            root_c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if root_fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: root_fd was just opened and is owned by nothing else.
    let root_fd = unsafe { OwnedFd::from_raw_fd(root_fd) };
    let rel = CString::new(location.trim_start_matches('/')).map_err(std::io::Error::other)?;
    // SAFETY: open_how is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT;
    use std::os::fd::AsRawFd;
    // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and a fully initialised open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_fd.as_raw_fd(),
            rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new fd that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd as i32) };
    file.metadata()
}

fn identity(root: &Path, location: &str) -> Option<InodeKey> {
    let meta = stat_in_root(root, location).ok()?;
    Some(InodeKey {
        dev: kernel_dev(meta.dev()),
        ino: meta.ino(),
    })
}

fn merge_exec(table: &mut HashMap<InodeKey, InodeRule>, key: InodeKey, rule: InodeRule) {
    let slot = table.entry(key).or_insert(rule);
    if rank(rule.verdict) > rank(slot.verdict) {
        *slot = rule;
    }
}

fn merge_file(entry: &mut FileRule, access: &[Access], rule: u32, verdict: u8, kind: u8) {
    for a in access {
        let i = match a {
            Access::Read => ACC_READ,
            Access::Write => ACC_WRITE,
            Access::Exec => ACC_EXEC,
        };
        let slot = &mut entry.access[i];
        if slot.set == 0 || rank(verdict) > rank(slot.verdict) {
            *slot = AccessRule {
                rule,
                verdict,
                kind,
                set: 1,
                pad: 0,
            };
        }
    }
}

/// The ELF interpreters of the allowed programs, as the workload sees them:
/// in allowlist mode the kernel maps them for every dynamic program.
fn allowed_interpreters(plan: &Plan, root: &Path) -> Vec<String> {
    let mut out: Vec<String> = plan
        .exec
        .rules
        .iter()
        .filter(|r| r.verdict == RuleVerdict::Allow)
        .filter_map(|r| match &r.target {
            Target::Path { path } => {
                let host_path: PathBuf = root.join(path.trim_start_matches('/'));
                crate::landlock_layer::elf_interpreter(&host_path)
            }
            Target::Dir { .. } => None,
        })
        .map(|p| p.display().to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn build(plan: &Plan, root: &Path) -> RuleTables {
    let mut t = RuleTables::default();
    for (i, r) in plan.exec.rules.iter().enumerate() {
        let location = r.target.location();
        let rule = InodeRule {
            rule: i as u32,
            verdict: verdict_code(r.verdict),
            kind: kind_of(&r.target),
            pad: [0; 2],
        };
        match identity(root, location) {
            Some(key) => merge_exec(&mut t.exec_inodes, key, rule),
            None if rule.kind == MATCH_FILE && PathKey::new(location).is_some() => {
                let slot = t.exec_paths.entry(location.to_string()).or_insert(rule);
                if rank(rule.verdict) > rank(slot.verdict) {
                    *slot = rule;
                }
            }
            None => t.unresolved.push(location.to_string()),
        }
    }
    if plan.exec.default == DefaultAction::Deny {
        for interp in allowed_interpreters(plan, root) {
            if let Some(key) = identity(root, &interp) {
                t.exec_inodes.entry(key).or_insert(InodeRule {
                    rule: NO_RULE,
                    verdict: VERDICT_ALLOW,
                    kind: MATCH_FILE,
                    pad: [0; 2],
                });
            }
        }
    }
    for (i, r) in plan.file.iter().enumerate() {
        let location = r.target.location();
        let (verdict, kind) = (verdict_code(r.verdict), kind_of(&r.target));
        match identity(root, location) {
            Some(key) => merge_file(
                t.file_inodes.entry(key).or_default(),
                &r.access,
                i as u32,
                verdict,
                kind,
            ),
            None if kind == MATCH_FILE && PathKey::new(location).is_some() => merge_file(
                t.file_paths.entry(location.to_string()).or_default(),
                &r.access,
                i as u32,
                verdict,
                kind,
            ),
            None => t.unresolved.push(location.to_string()),
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::{load_str, LoadOptions};

    fn plan(spec: &str) -> Plan {
        let doc = format!(
            "apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {{name: t}}\nspec:\n{spec}"
        );
        let loaded = load_str(&doc, &LoadOptions::default());
        assert!(!loaded.diags.has_errors(), "{:#?}", loaded.diags.items);
        loaded.policies[0].compile().expect("compiles")
    }

    #[test]
    fn a_symlink_and_its_target_share_one_key_and_missing_files_go_by_path() {
        let dir = std::env::temp_dir().join(format!("pal-tables-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "x").unwrap();
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let p = plan(&format!(
            "  file:\n    rules:\n      - {{path: {}, access: [read], action: deny}}\n      - {{path: {}, access: [write], action: allow}}\n      - {{path: {}/later, access: [read], action: deny}}\n",
            file.display(),
            link.display(),
            dir.display()
        ));
        let t = build(&p, Path::new("/"));
        assert_eq!(t.file_inodes.len(), 1, "{t:?}");
        let rule = t.file_inodes.values().next().unwrap();
        assert_eq!(rule.access[ACC_READ].verdict, VERDICT_DENY);
        assert_eq!(rule.access[ACC_WRITE].verdict, VERDICT_ALLOW);
        assert_eq!(rule.access[ACC_EXEC].set, 0);
        assert!(t
            .file_paths
            .contains_key(&format!("{}/later", dir.display())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn on_a_tie_deny_wins_and_allowlists_admit_the_interpreter() {
        let p = plan("  process:\n    default: deny\n    allow: [{path: /usr/bin/env}, {path: /usr/bin/true}]\n    deny: [{path: /usr/bin/true}]\n");
        let t = build(&p, Path::new("/"));
        let key = identity(Path::new("/"), "/usr/bin/true").unwrap();
        assert_eq!(t.exec_inodes[&key].verdict, VERDICT_DENY);
        let ld = crate::landlock_layer::elf_interpreter(Path::new("/usr/bin/env")).unwrap();
        let ld_key = identity(Path::new("/"), &ld.display().to_string()).unwrap();
        assert_eq!(t.exec_inodes[&ld_key].verdict, VERDICT_ALLOW);
    }

    #[test]
    fn symlinks_resolve_inside_the_workload_root() {
        let root = std::env::temp_dir().join(format!("pal-root-{}", std::process::id()));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/real"), "x").unwrap();
        let _ = std::fs::remove_file(root.join("etc/abs"));
        // Absolute inside the container; on the host it would name the host's file.
        std::os::unix::fs::symlink("/etc/real", root.join("etc/abs")).unwrap();
        let inside = stat_in_root(&root, "/etc/abs").unwrap();
        let real = std::fs::metadata(root.join("etc/real")).unwrap();
        assert_eq!((inside.dev(), inside.ino()), (real.dev(), real.ino()));
        assert!(stat_in_root(&root, "/etc/missing").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn directory_rules_keep_their_kind_per_access() {
        let doc = "apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {name: t}\nspec:\n  file:\n    rules:\n      - {dir: /etc/, recursive: true, access: [write], action: deny}\n      - {dir: /usr/, access: [read], action: audit}\n";
        let loaded = load_str(doc, &LoadOptions::default());
        let p = loaded.policies[0].compile().expect("compiles");
        let t = build(&p, Path::new("/"));
        let etc = identity(Path::new("/"), "/etc/").unwrap();
        let w = t.file_inodes[&etc].access[ACC_WRITE];
        assert_eq!(
            (w.set, w.kind, w.verdict),
            (1, MATCH_DIR_TREE, VERDICT_DENY)
        );
        let usr = identity(Path::new("/"), "/usr/").unwrap();
        let r = t.file_inodes[&usr].access[ACC_READ];
        assert_eq!(
            (r.set, r.kind, r.verdict),
            (1, MATCH_DIR_DIRECT, VERDICT_AUDIT)
        );
    }
}
