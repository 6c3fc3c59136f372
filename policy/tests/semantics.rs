//! What compiled policies decide: specificity, ties, audit mode, egress tables, digests.

use palisade_policy::model::Access;
use palisade_policy::plan::{Plan, RuleVerdict};
use palisade_policy::{load_str, LoadOptions};

fn plan(spec: &str) -> Plan {
    let source =
        format!("apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {{name: t}}\nspec:\n{spec}");
    let loaded = load_str(&source, &LoadOptions::default());
    assert!(!loaded.diags.has_errors(), "{:#?}", loaded.diags.items);
    loaded.policies[0].compile().expect("compiles")
}

#[test]
fn most_specific_file_rule_wins_and_deny_wins_ties() {
    let p = plan(
        "  file:\n    rules:\n      - {dir: /etc/, recursive: true, access: [read], action: deny}\n      - {dir: /etc/ssl/, recursive: true, access: [read], action: allow}\n      - {path: /etc/ssl/private.key, access: [read], action: deny}\n      - {path: /etc/hosts, access: [read], action: allow}\n      - {path: /etc/hosts, access: [read], action: deny}\n",
    );
    let verdict = |path| p.decide_file(path, Access::Read).map(|r| r.verdict);
    assert_eq!(verdict("/etc/passwd"), Some(RuleVerdict::Deny));
    assert_eq!(verdict("/etc/ssl/certs/ca.pem"), Some(RuleVerdict::Allow));
    assert_eq!(verdict("/etc/ssl/private.key"), Some(RuleVerdict::Deny));
    assert_eq!(verdict("/etc/hosts"), Some(RuleVerdict::Deny));
    assert_eq!(verdict("/usr/bin/ls"), None);
    assert_eq!(p.decide_file("/etc/passwd", Access::Write), None);
}

#[test]
fn non_recursive_directories_cover_direct_entries_only() {
    let p = plan("  process:\n    deny: [{dir: /tmp/}]\n");
    assert!(p.decide_exec("/tmp/x").is_some());
    assert!(p.decide_exec("/tmp/a/x").is_none());
}

#[test]
fn audit_mode_turns_denials_into_audits() {
    let p = plan(
        "  mode: audit\n  file:\n    rules: [{path: /etc/shadow, access: [read], action: deny}]\n",
    );
    assert_eq!(p.file[0].verdict, RuleVerdict::Audit);
    assert!(p.seccomp_filters(&Default::default(), true).is_empty());
}

#[test]
fn ipv4_rules_are_stored_v4_mapped_and_enclosing_prefixes_are_inherited() {
    let p = plan(
        "  network:\n    egress:\n      default: deny\n      allow: [{cidr: 10.0.0.0/8, ports: [443], protocol: tcp}]\n      deny: [{cidr: 10.1.0.0/16, ports: [22]}]\n",
    );
    let e = p.egress.unwrap();
    let inner = e
        .prefixes
        .iter()
        .find(|x| x.prefix_len == 112)
        .expect("/16 as v4-mapped");
    assert_eq!(
        &inner.addr[..12],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
    );
    let inner_ports: Vec<_> = e
        .ports
        .iter()
        .filter(|x| x.group == inner.group)
        .map(|x| (x.protocol, x.port, x.verdict))
        .collect();
    assert!(
        inner_ports.contains(&(6, 443, RuleVerdict::Allow)),
        "{inner_ports:?}"
    );
    assert!(
        inner_ports.contains(&(0, 22, RuleVerdict::Deny)),
        "{inner_ports:?}"
    );
}

#[test]
fn digest_ignores_formatting_and_order_but_not_content() {
    let a = plan("  file:\n    rules:\n      - {path: /a, access: [read, write], action: deny}\n      - {path: /b, access: [read], action: deny}\n");
    let b = plan("  file:\n    rules:\n    - path: /b\n      action: deny\n      access: [read]\n    - action: deny\n      access: [write, read]\n      path: /a\n");
    let c = plan("  file:\n    rules:\n      - {path: /a, access: [read], action: deny}\n      - {path: /b, access: [read], action: deny}\n");
    assert_eq!(a.digest, b.digest);
    assert_ne!(a.digest, c.digest);
    assert!(a.digest.starts_with("sha256:") && a.digest.len() == 71);
}

#[test]
fn block_setuid_denies_the_setid_family_only_without_bpf_lsm() {
    let p = plan("  privileges: {blockSetuid: true}\n");
    let with = p.seccomp_filters(&Default::default(), true);
    assert!(with[0].rules.contains_key("setresuid"));
    assert!(p.seccomp_filters(&Default::default(), false).is_empty());
}

#[test]
fn kubearmor_allow_becomes_an_allowlist() {
    let source = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: k}\nspec:\n  selector: {matchLabels: {app: a}}\n  process:\n    matchPaths: [{path: /app/server}]\n  file:\n    matchDirectories: [{dir: /data/, recursive: true, readOnly: true}]\n  action: Allow\n";
    let loaded = load_str(source, &LoadOptions::default());
    assert!(!loaded.diags.has_errors(), "{:#?}", loaded.diags.items);
    let p = loaded.policies[0].compile().unwrap();
    assert_eq!(p.exec.default, palisade_policy::model::DefaultAction::Deny);
    assert_eq!(
        p.decide_file("/data/x", Access::Read).unwrap().verdict,
        RuleVerdict::Allow
    );
    assert_eq!(
        p.decide_file("/data/x", Access::Write).unwrap().verdict,
        RuleVerdict::Deny
    );
    assert_eq!(
        p.decide_file("/etc/passwd", Access::Read).unwrap().verdict,
        RuleVerdict::Deny
    );
}

#[test]
fn bpf_lsm_carries_exec_file_and_setuid_rules_alone_where_the_host_has_it() {
    use palisade_policy::plan::{carriers, Layer};
    use std::collections::BTreeSet;
    let p = plan(
        "  process:\n    deny: [{path: /usr/bin/curl, id: no-curl}]\n  file:\n    rules:\n      - {path: /etc/shadow, access: [read], action: deny, id: shadow}\n  privileges: {blockSetuid: true}\n",
    );
    let without: BTreeSet<Layer> = [
        Layer::Landlock,
        Layer::ExecGuard,
        Layer::Seccomp,
        Layer::Caps,
    ]
    .into_iter()
    .collect();
    let mut with = without.clone();
    with.insert(Layer::BpfLsm);
    let exec = &p.exec.rules[0].layers;
    assert_eq!(carriers(exec, &with), vec![Layer::BpfLsm]);
    assert_eq!(
        carriers(exec, &without),
        vec![Layer::Landlock, Layer::ExecGuard]
    );
    assert_eq!(
        carriers(&p.privileges.layers_setuid, &with),
        vec![Layer::BpfLsm]
    );
    assert_eq!(
        carriers(&p.privileges.layers_setuid, &without),
        vec![Layer::Seccomp, Layer::ExecGuard]
    );
    // Network rules have no BPF LSM candidate and keep their layer.
    assert_eq!(
        carriers(
            &[Layer::CgroupSock],
            &with.iter().copied().chain([Layer::CgroupSock]).collect()
        ),
        vec![Layer::CgroupSock]
    );

    let on_lsm_host = palisade_policy::explain::explain(&p, Some(&with));
    assert!(
        on_lsm_host.contains("[rule no-curl; enforced by bpf-lsm]"),
        "{on_lsm_host}"
    );
    assert!(
        on_lsm_host.contains("[rule shadow; enforced by bpf-lsm]"),
        "{on_lsm_host}"
    );
    assert!(!on_lsm_host.contains("exec-guard"), "{on_lsm_host}");
    let elsewhere = palisade_policy::explain::explain(&p, Some(&without));
    assert!(
        elsewhere.contains("[rule no-curl; enforced by landlock, exec-guard]"),
        "{elsewhere}"
    );
}

#[test]
fn a_process_section_denies_anonymous_exec_unless_it_allows_it() {
    use palisade_policy::model::DefaultAction;
    assert_eq!(
        plan("  file: {rules: []}\n").exec.anonymous,
        DefaultAction::Allow
    );
    assert_eq!(
        plan("  process: {default: allow}\n").exec.anonymous,
        DefaultAction::Deny
    );
    assert_eq!(
        plan("  process: {default: allow, anonymousExec: allow}\n")
            .exec
            .anonymous,
        DefaultAction::Allow
    );
}
