//! `palisade policy explain`: what a policy allows and denies, for a reviewer.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::model::{Access, DefaultAction, Mode, Protocol, Target};
use crate::plan::{Layer, PathRule, Plan, RuleVerdict};

fn target_words(t: &Target) -> String {
    match t {
        Target::Path { path } => path.clone(),
        Target::Dir {
            dir,
            recursive: true,
        } => format!("anything under {dir}"),
        Target::Dir { dir, .. } => format!("files directly in {dir}"),
    }
}

fn access_words(access: &[Access]) -> String {
    let words: Vec<&str> = access
        .iter()
        .map(|a| match a {
            Access::Read => "read",
            Access::Write => "write",
            Access::Exec => "execute",
        })
        .collect();
    words.join("/")
}

/// The layers that will carry a rule on a host offering `available` (all, when unknown).
fn carriers(layers: &[Layer], available: Option<&BTreeSet<Layer>>) -> String {
    let chosen: Vec<&str> = match available {
        Some(a) => crate::plan::carriers(layers, a),
        None => layers.to_vec(),
    }
    .iter()
    .map(|l| l.name())
    .collect();
    if chosen.is_empty() {
        "NO LAYER ON THIS HOST".to_string()
    } else {
        chosen.join(", ")
    }
}

fn rule_line(out: &mut String, verb: &str, r: &PathRule, available: Option<&BTreeSet<Layer>>) {
    let _ = writeln!(
        out,
        "  - {verb} {} [rule {}; enforced by {}]",
        target_words(&r.target),
        r.rule.id,
        carriers(&r.layers, available)
    );
}

/// `available`: the layers this host offers (from layer detection), or `None` to list every candidate.
pub fn explain(plan: &Plan, available: Option<&BTreeSet<Layer>>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Policy `{}` ({})", plan.name, plan.digest);
    match plan.mode {
        Mode::Enforce => {
            let _ = writeln!(out, "Mode: enforce. Denied actions fail and are logged.");
        }
        Mode::Audit => {
            let _ = writeln!(
                out,
                "Mode: audit. Nothing is blocked; would-be denials are logged by the layers that can audit \
                 (bpf-lsm, cgroup-sock, exec-guard). Landlock, seccomp and capability rules are not applied \
                 in audit mode because those layers cannot log-and-allow."
            );
        }
    }

    let _ = writeln!(out, "\nWhat may run:");
    match plan.exec.default {
        DefaultAction::Deny => {
            let _ = writeln!(out, "  Only these programs (everything else is refused):");
        }
        DefaultAction::Allow => {
            let _ = writeln!(out, "  Any program, except as listed:");
        }
    }
    for r in &plan.exec.rules {
        let verb = match r.verdict {
            RuleVerdict::Allow => "may run",
            RuleVerdict::Deny => "may NOT run",
            RuleVerdict::Audit => "logged when run",
        };
        rule_line(&mut out, verb, r, available);
    }
    if plan
        .exec
        .rules
        .iter()
        .any(|r| r.verdict == RuleVerdict::Deny)
        && available.is_some_and(|a| !a.contains(&Layer::BpfLsm))
    {
        let _ = writeln!(
            out,
            "  Note: without BPF LSM, a denied program that Landlock cannot refuse by path (e.g. reached \
             through a hard link) is stopped by the exec guard: the exec succeeds and the process is killed \
             before its first instruction. That is weaker than a refused system call."
        );
    }

    if plan.exec.anonymous != DefaultAction::Allow {
        let _ = writeln!(
            out,
            "  Programs from a file with no name (memfd + fexecve, O_TMPFILE) may NOT run \
             [rule process.anonymousExec; enforced by {}]",
            carriers(&[Layer::BpfLsm, Layer::ExecGuard], available)
        );
    }
    if plan.exec.default == DefaultAction::Deny
        && available.is_none_or(|a| a.contains(&Layer::BpfLsm))
    {
        let _ = writeln!(
            out,
            "  With BPF LSM, executable mappings count as running: shared libraries must be allowed too \
             (the ELF interpreter of each allowed program is added automatically)."
        );
    }

    let _ = writeln!(out, "\nFiles:");
    if plan.file.is_empty() {
        let _ = writeln!(out, "  No file rules.");
    }
    for r in &plan.file {
        let verb = match r.verdict {
            RuleVerdict::Allow => format!("may {}", access_words(&r.access)),
            RuleVerdict::Deny => format!("may NOT {}", access_words(&r.access)),
            RuleVerdict::Audit => format!("logged on {}", access_words(&r.access)),
        };
        rule_line(&mut out, &verb, r, available);
    }
    if !plan.file.is_empty() {
        let _ = writeln!(
            out,
            "  The most specific rule wins (a path over its directory, a deeper directory over a shallower one); \
             on a tie, deny wins."
        );
    }

    let _ = writeln!(out, "\nNetwork egress:");
    match &plan.egress {
        None => {
            let _ = writeln!(out, "  Unrestricted.");
        }
        Some(e) => {
            let _ = writeln!(
                out,
                "  Default: {} [enforced by {}]",
                match e.default {
                    DefaultAction::Allow => "allowed",
                    DefaultAction::Deny => "denied",
                },
                carriers(&[Layer::CgroupSock], available)
            );
            for r in &e.rules {
                let ports = if r.ports.is_empty() {
                    "any port".to_string()
                } else {
                    r.ports
                        .iter()
                        .map(|(a, b)| {
                            if a == b {
                                a.to_string()
                            } else {
                                format!("{a}-{b}")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let proto = match r.protocol {
                    Protocol::Tcp => "TCP",
                    Protocol::Udp => "UDP",
                    Protocol::Any => "TCP/UDP",
                };
                let verb = match r.verdict {
                    RuleVerdict::Allow => "allowed",
                    RuleVerdict::Deny => "DENIED",
                    RuleVerdict::Audit => "logged",
                };
                let _ = writeln!(
                    out,
                    "  - {proto} to {} on {ports}: {verb} [rule {}]",
                    r.cidr, r.rule.id
                );
            }
            let _ = writeln!(
                out,
                "  Checked at connect() and at UDP sendto/sendmsg; IPv4-mapped IPv6 addresses count as IPv4."
            );
        }
    }
    let _ = writeln!(
        out,
        "  Raw and packet sockets: {}",
        match plan.raw_sockets {
            DefaultAction::Allow => "allowed",
            DefaultAction::Deny => "refused at socket creation [cgroup-sock]",
        }
    );

    let _ = writeln!(out, "\nPrivileges:");
    let p = &plan.privileges;
    let _ = writeln!(
        out,
        "  no_new_privs: {}",
        if p.no_new_privileges {
            "set (setuid bits and file capabilities are ignored on exec)"
        } else {
            "not set"
        }
    );
    if p.block_setuid {
        let _ = writeln!(
            out,
            "  Changing to another uid/gid is denied [{}]; without BPF LSM the whole set*id syscall family \
             is refused by seccomp and executing a setuid/setgid file is stopped by the exec guard.",
            carriers(&p.layers_setuid, available)
        );
    }
    if !p.cap_drop.is_empty() || !p.cap_add.is_empty() {
        let _ = writeln!(
            out,
            "  Capabilities: drop [{}], keep/add [{}] [caps]",
            p.cap_drop.join(", "),
            p.cap_add.join(", ")
        );
    }

    let _ = writeln!(out, "\nSystem calls:");
    match &plan.seccomp.profile_name {
        Some(name) => {
            let _ = writeln!(out, "  Profile: {name} [seccomp]");
        }
        None => {
            let _ = writeln!(out, "  No profile from this policy.");
        }
    }
    for r in &plan.seccomp.deny {
        let _ = writeln!(
            out,
            "  - {} refused with EPERM [rule {}; seccomp]",
            r.name, r.rule.id
        );
    }
    out
}
